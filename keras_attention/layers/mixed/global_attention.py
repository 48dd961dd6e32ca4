import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers import base
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.channel_mlp import channel_mlp


@keras.saving.register_keras_serializable(package="keras_attention")
class GlobalAttention(ImageAttentionLayer):
    """Global Attention Mechanism (GAM): channel then spatial attention without pooling.

    Reference: Liu, Shao and Hoffmann, "Global Attention Mechanism: Retain
    Information to Enhance Channel-Spatial Interactions", 2021
    (https://arxiv.org/abs/2112.05561).

    Channel attention: an MLP `Dense(C // reduction, relu) -> Dense(C)` (with
    biases) runs on the channel vector of every pixel (the paper's 3-D
    permutation; nothing is pooled), a sigmoid gates `x` element-wise.
    Spatial attention on the result: `7x7 conv to C // reduction -> BN ->
    ReLU -> 7x7 conv to C -> BN -> sigmoid` (convs with biases), which gates
    it element-wise again. The paper's optional group convolution with
    channel shuffle (used for ResNet-50) is not included. The authors released
    no code; this follows the paper and the implementation everyone uses
    (`GAM_Attention`, rate=4). With C=256 and reduction=4: 1,640,320
    parameters (1,639,552 trainable).

    Volumes and clips: the MLP runs on every voxel's channel vector, and the
    spatial branch's convolutions are 7x7x7 (`Conv3D`); the gates keep the
    input's shape. With C=256 and reduction=4: 11,274,112 parameters. 2-D
    weights inflate onto it by path (kernels centred in depth).

    Mixed precision: no softmax and no sum over positions: everything runs in
    the compute dtype, with BatchNormalization's statistics in float32
    (Keras's).
    On small clips, TensorFlow 2.21's oneDNN CPU kernel for the gradient of
    a bfloat16 Conv3D with these 7x7x7 kernels returns non-finite values
    (at depth 5) or crashes the process (depth 4; seen with `tf.nn.conv3d`
    alone): train such clips in float32 or mixed_float16 there, or with
    `TF_ENABLE_ONEDNN_OPTS=0`. JAX and PyTorch are not affected.

    Args:
        reduction: int >= 1, the ratio r of both branches; hidden widths are
            `max(1, C // reduction)`. Defaults to 4.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return a dict of the two gates,
            `"channel"` and `"spatial"`, each the same shape as the input
            (`(batch, D, H, W, C)` for a channels_last clip).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = GlobalAttention(reduction=4)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, reduction=4, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        self.reduction = reduction

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        hidden = max(1, channels // self.reduction)
        self.channel_hidden, self.channel_logits = channel_mlp(
            channels, hidden, ("channel_hidden", "channel_logits"), self.dtype_policy
        )
        # The convolutions run channels_last (inputs transposed in `call`).
        rank, dtype = self.spatial_rank, self.dtype_policy
        positions = (None,) * (rank + 1)
        self.spatial_reduce = base.conv(
            rank, "spatial_reduce", hidden, 7, channels, dtype, padding="same"
        )
        self.reduce_norm = batch_norm("reduce_norm", (*positions, hidden), dtype)
        self.spatial_expand = base.conv(
            rank, "spatial_expand", channels, 7, hidden, dtype, padding="same"
        )
        self.expand_norm = batch_norm("expand_norm", (*positions, channels), dtype)
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        channel = ops.sigmoid(self.channel_logits(self.channel_hidden(x)))
        x = x * channel
        hidden = ops.relu(self.reduce_norm(self.spatial_reduce(x), training=training))
        spatial = ops.sigmoid(self.expand_norm(self.spatial_expand(hidden), training=training))
        outputs = ka_ops.from_channels_last(x * spatial, self.data_format)
        attention = {
            "channel": ka_ops.from_channels_last(channel, self.data_format),
            "spatial": ka_ops.from_channels_last(spatial, self.data_format),
        }
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction})
        return config
