import keras

from keras_attention import ops as ka_ops
from keras_attention.layers import base
from keras_attention.layers.base import ImageAttentionLayer


@keras.saving.register_keras_serializable(package="keras_attention")
class LargeKernelAttention(ImageAttentionLayer):
    """Large Kernel Attention (LKA): a decomposed large convolution as the attention map.

    Reference: Guo, Lu, Liu, Cheng and Hu, "Visual Attention Network", 2022
    (https://arxiv.org/abs/2202.09741).

    A 21x21 receptive field is decomposed into a 5x5 depthwise convolution, a
    7x7 depthwise convolution with dilation 3 and a 1x1 convolution (all with
    biases, as in the authors' code Visual-Attention-Network/VAN-Classification);
    their output is the attention map, which multiplies the input element-wise
    (no sigmoid). This is VAN's `LKA` module; VAN wraps it in 1x1
    projections, a GELU and a shortcut, which are not part of this layer.
    With C=256: 85,248 parameters (6,656 + 12,800 + 65,792).

    Volumes and clips: the same decomposition in 3-D, a 5x5x5 depthwise
    convolution, a 7x7x7 depthwise convolution with dilation 3 (a 23x23x23
    receptive field) and a 1x1x1 convolution, all with biases (the depthwise
    ones through `DepthwiseConv3D`). With C=256: 186,112 parameters
    (32,256 + 88,064 + 65,792). The 2-D weights inflate onto it by path
    (each kernel gains a leading depth axis).

    Mixed precision: everything runs in the compute dtype (no softmax, no
    sum over positions). The output is unbounded in the input scale: the
    input times a map linear in it, so it grows with the square of the scale,
    and float16 overflows (inf) past some scale: past x600 for unit-normal
    inputs with the initial weights (C=64, 14x14; C=256: x1,200), past ~x90
    with the layer contract's random weights (C=16). bfloat16 has float32's
    range.

    Args:
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the attention map, the same
            shape as the input (`(batch, D, H, W, C)` for a channels_last clip).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = LargeKernelAttention()(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        rank, dtype = self.spatial_rank, self.dtype_policy
        # The convolutions run channels_last (inputs transposed in `call`).
        self.local = base.depthwise_conv(rank, "local", 5, channels, dtype)
        self.dilated = base.depthwise_conv(rank, "dilated", 7, channels, dtype, dilation_rate=3)
        self.pointwise = base.pointwise_conv("pointwise", channels, channels, dtype, rank=rank)
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        attention = self.pointwise(self.dilated(self.local(x)))
        attention = ka_ops.from_channels_last(attention, self.data_format)
        return self._outputs(inputs * attention, attention, return_attention)
