import keras

from keras_attention import ops as ka_ops
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
        inputs: a 4-D feature map.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the attention map, the same
            shape as the input.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = LargeKernelAttention()(x)
    >>> y.shape
    (None, None, None, 64)
    """

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        # The convolutions run channels_last (inputs transposed in `call`).
        common = {"padding": "same", "data_format": "channels_last", "dtype": self.dtype_policy}
        self.local = keras.layers.DepthwiseConv2D(5, name="local", **common)
        self.local.build((None, None, None, channels))
        self.dilated = keras.layers.DepthwiseConv2D(7, dilation_rate=3, name="dilated", **common)
        self.dilated.build((None, None, None, channels))
        self.pointwise = keras.layers.Conv2D(channels, 1, name="pointwise", **common)
        self.pointwise.build((None, None, None, channels))
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        attention = self.pointwise(self.dilated(self.local(x)))
        attention = ka_ops.from_channels_last(attention, self.data_format)
        return self._outputs(inputs * attention, attention, return_attention)
