import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_choice
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.channel_mlp import channel_mlp

COMBINES = ("add", "max")


@keras.saving.register_keras_serializable(package="keras_attention")
class SpatialChannelSqueezeExcitation(ImageAttentionLayer):
    """Concurrent spatial and channel squeeze & excitation (scSE).

    Reference: Roy, Navab and Wachinger, "Concurrent Spatial and Channel
    'Squeeze & Excitation' in Fully Convolutional Networks", MICCAI 2018
    (https://arxiv.org/abs/1803.02579).

    Two gates see the same input. cSE is squeeze-and-excitation: global
    average pooling, `Dense(C // reduction, relu) -> Dense(C) -> sigmoid`
    (biases on), one weight per channel. sSE is a 1x1 convolution from C
    channels to one map (with bias) and a sigmoid, one weight per pixel. The
    two recalibrated maps `x * cSE` and `x * sSE` are combined element-wise:
    by their sum (`combine="add"`, the MICCAI paper's scSE) or by their
    maximum (`combine="max"`, what the authors' released code
    ai-med/squeeze_and_excitation does). reduction=2 is the authors' code's
    default. With C=256: 66,177 parameters at reduction=2 (65,920 + 257),
    8,721 at reduction=16.

    On volumes and clips cSE pools over depth, height and width and sSE is a
    1x1x1 convolution, one weight per voxel: with `combine="max"` this is
    fvcore's `ChannelSpatialSqueezeExcitation(is_3d=True)` (ReLU, biases on,
    `reduction_ratio=reduction`), to float32 rounding.

    Mixed precision: its spatial means accumulate in float32
    (`keras_attention.ops.mean`); the MLP, the 1x1 convolution and the sigmoid
    gates run in the compute dtype.

    Args:
        reduction: int >= 1, the cSE bottleneck ratio; the hidden layer has
            `max(1, C // reduction)` units. Defaults to 2.
        combine: `"add"` or `"max"`. Defaults to `"add"`.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return a dict of the two gates:
            `"channel"`, shape `(batch, C)`, and `"spatial"`, shape
            `(batch, H, W, 1)` (channels_last) or `(batch, 1, H, W)`;
            `(batch, D, H, W, 1)` or `(batch, 1, D, H, W)` for volumes.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = SpatialChannelSqueezeExcitation(reduction=2)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, reduction=2, combine="add", data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        check_choice("combine", combine, COMBINES)
        self.reduction = reduction
        self.combine = combine

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self.hidden, self.logits = channel_mlp(
            channels, max(1, channels // self.reduction), ("hidden", "logits"), self.dtype_policy
        )
        # A 1x1 (1x1x1) conv to one map is a dot product over channels: a Dense
        # on the channel axis needs no data format or rank and has the conv's
        # (C, 1) kernel.
        self.spatial = keras.layers.Dense(1, dtype=self.dtype_policy, name="spatial")
        self.spatial.build((None, channels))
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        channel = ops.sigmoid(
            self.logits(self.hidden(ka_ops.spatial_mean(inputs, self.data_format)))
        )
        x = ka_ops.to_channels_last(inputs, self.data_format)
        spatial = ka_ops.from_channels_last(ops.sigmoid(self.spatial(x)), self.data_format)
        by_channel = inputs * ka_ops.expand_channels(channel, self.data_format, len(inputs.shape))
        by_position = inputs * spatial
        if self.combine == "add":
            outputs = by_channel + by_position
        else:
            outputs = ops.maximum(by_channel, by_position)
        attention = {"channel": channel, "spatial": spatial}
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction, "combine": self.combine})
        return config
