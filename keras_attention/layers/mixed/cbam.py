import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import conv
from keras_attention.layers.channel_mlp import channel_mlp


def check_odd_kernel_size(kernel_size):
    check_positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(
            "`kernel_size` must be odd so that the convolution is centred on "
            f"each pixel. Received: kernel_size={kernel_size}"
        )


@keras.saving.register_keras_serializable(package="keras_attention")
class ChannelGate(ImageAttentionLayer):
    """CBAM's channel attention: a shared MLP over average- and max-pooled descriptors.

    Reference: Woo, Park, Lee and Kweon, "CBAM: Convolutional Block Attention
    Module", ECCV 2018 (https://arxiv.org/abs/1807.06521).

    The feature map is pooled over its spatial axes twice, by mean and by max.
    One MLP `Dense(C / reduction, relu) -> Dense(C)` (both with biases) maps each
    descriptor to channel logits; the two are summed and a sigmoid turns them
    into a gate that rescales each channel. With C=256 and reduction=16 the MLP
    has 8,464 parameters.

    On volumes and clips the descriptors pool over the depth, height and
    width axes; the MLP is the same.

    Mixed precision: its spatial means accumulate in float32
    (`keras_attention.ops.spatial_mean`); the max pools, the shared MLP and
    the sigmoid gate run in the compute dtype.

    Args:
        reduction: int, the bottleneck ratio r; the hidden layer has
            `max(1, C // reduction)` units. Defaults to 16.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the channel gate, shape
            `(batch, C)` (for images and volumes alike).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = ChannelGate(reduction=16)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, reduction=16, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        self.reduction = reduction

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self.hidden, self.logits = channel_mlp(
            channels, max(1, channels // self.reduction), ("hidden", "logits"), self.dtype_policy
        )
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        ndim = len(inputs.shape)
        axes = ka_ops.spatial_axes(self.data_format, ndim)
        # The same MLP sees each descriptor on its own: a stack of the two would
        # make TFLite's int8 quantizer clip the input (ops.conv_of_pooled_pair).
        logits = [
            self.logits(self.hidden(pooled))
            for pooled in (
                ka_ops.spatial_mean(inputs, self.data_format),
                ops.max(inputs, axis=axes),
            )
        ]
        gate = ops.sigmoid(logits[0] + logits[1])
        outputs = inputs * ka_ops.expand_channels(gate, self.data_format, ndim)
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction})
        return config


@keras.saving.register_keras_serializable(package="keras_attention")
class SpatialGate(ImageAttentionLayer):
    """CBAM's spatial attention: a convolution over channel-pooled maps.

    Reference: Woo, Park, Lee and Kweon, "CBAM: Convolutional Block Attention
    Module", ECCV 2018 (https://arxiv.org/abs/1807.06521).

    The channels are pooled by max and by mean into a 2-channel map (in that
    order, as in the authors' code), a `kernel_size` x `kernel_size`
    convolution without bias and a BatchNormalization give one logit per
    pixel, and a sigmoid turns it into a gate shared by all channels. With the
    default 7x7 kernel the convolution has 98 parameters.

    On volumes and clips the convolution is `kernel_size` cubed (7x7x7: 686
    parameters), one logit per voxel.

    Mixed precision: the mean over channels accumulates in float32
    (`keras_attention.ops.mean`); the max, the convolution and the sigmoid gate
    run in the compute dtype, with BatchNormalization's statistics in float32
    (Keras's).

    Args:
        kernel_size: positive odd int, the size of the convolution. Defaults
            to 7.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return the spatial gate, shape
            `(batch, H, W, 1)` (channels_last) or `(batch, 1, H, W)`;
            `(batch, D, H, W, 1)` or `(batch, 1, D, H, W)` for volumes.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = SpatialGate(kernel_size=7)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, kernel_size=7, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_odd_kernel_size(kernel_size)
        self.kernel_size = kernel_size

    def build(self, input_shape):
        self._input_channels(input_shape)
        rank = self.spatial_rank
        # The convolution runs channels_last (its input is transposed in
        # `call`), so the weights are the same whatever `data_format` is.
        self.conv = conv(
            rank,
            "conv",
            1,
            self.kernel_size,
            2,
            self.dtype_policy,
            padding="same",
            use_bias=False,
        )
        self.norm = batch_norm("norm", (None,) * (rank + 1) + (1,), self.dtype_policy)
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        axis = ka_ops.channel_axis(self.data_format)
        maxed, meaned = (
            ka_ops.to_channels_last(pooled, self.data_format)
            for pooled in (
                ops.max(inputs, axis=axis, keepdims=True),
                ka_ops.mean(inputs, axis, keepdims=True),
            )
        )
        # self.conv on the two maps concatenated, without the concatenation.
        logits = ka_ops.conv_of_pooled_pair(maxed, meaned, self.conv.kernel)
        gate = ops.sigmoid(self.norm(logits, training=training))
        gate = ka_ops.from_channels_last(gate, self.data_format)
        return self._outputs(inputs * gate, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size})
        return config


@keras.saving.register_keras_serializable(package="keras_attention")
class CBAM(ImageAttentionLayer):
    """Convolutional Block Attention Module: a channel gate, then a spatial gate.

    Reference: Woo, Park, Lee and Kweon, "CBAM: Convolutional Block Attention
    Module", ECCV 2018 (https://arxiv.org/abs/1807.06521).

    The input is rescaled by a `ChannelGate` (shared MLP over the average- and
    max-pooled descriptors) and the result by a `SpatialGate` (a convolution
    over the max- and mean-pooled channels, with BatchNormalization). The two
    are sublayers named `channel_gate` and `spatial_gate`.

    On volumes and clips the channel gate pools over depth, height and width
    and the spatial gate's convolution is `kernel_size` cubed.

    Mixed precision: as in `ChannelGate` and `SpatialGate`: means accumulate in
    float32, the rest runs in the compute dtype.

    Args:
        reduction: int, the channel gate's bottleneck ratio; its hidden layer
            has `max(1, C // reduction)` units, as `SqueezeExcitation`'s: a
            ratio above C (e.g. 128 on 16 channels) leaves a 1-unit bottleneck.
            Defaults to 16.
        kernel_size: positive odd int, the spatial gate's convolution size.
            Defaults to 7.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
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

    >>> x = keras.Input((None, None, 256))
    >>> y = CBAM(reduction=16, kernel_size=7)(x)
    >>> y.shape
    (None, None, None, 256)
    """

    spatial_ranks = (2, 3)

    def __init__(self, reduction=16, kernel_size=7, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        check_odd_kernel_size(kernel_size)
        self.reduction = reduction
        self.kernel_size = kernel_size

    def build(self, input_shape):
        self._input_channels(input_shape)
        self.channel_gate = ChannelGate(
            self.reduction,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name="channel_gate",
        )
        self.channel_gate.build(input_shape)
        self.spatial_gate = SpatialGate(
            self.kernel_size,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name="spatial_gate",
        )
        self.spatial_gate.build(input_shape)
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x, channel = self.channel_gate(inputs, return_attention=True)
        outputs, spatial = self.spatial_gate(x, training=training, return_attention=True)
        attention = {"channel": channel, "spatial": spatial}
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction, "kernel_size": self.kernel_size})
        return config
