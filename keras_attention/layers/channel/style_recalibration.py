import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_number


def _safe_sqrt(x):
    """sqrt with a zero (not NaN) gradient at 0, e.g. for a channel that ReLU zeroed."""
    positive = x > 0
    return ops.where(positive, ops.sqrt(ops.where(positive, x, 1.0)), 0.0)


@keras.saving.register_keras_serializable(package="keras_attention")
class StyleRecalibration(ImageAttentionLayer):
    """Style-based Recalibration Module (SRM): a gate from each channel's mean and std.

    Reference: Lee, Kim and Nam, "SRM: A Style-based Recalibration Module for
    Convolutional Neural Networks", ICCV 2019 (https://arxiv.org/abs/1903.10829).

    Style pooling gives each channel its spatial mean and standard deviation;
    style integration weighs the two with a channel-wise fully connected layer
    (two weights a channel, no bias, named `cfc`, initialised to zero as in the
    authors' code), then BatchNormalization and a sigmoid give the channel gate.
    As in the authors' code the standard deviation is the unbiased one
    (divided by `H*W - 1`, `D*H*W - 1` for volumes; by 1 on a single
    position), `sqrt(var + epsilon)`: the
    authors' current code (commit "FIX : style pooling",
    https://github.com/hyunjaelee410/style-based-recalibration-module) adds
    1e-5, their first commit added nothing (`epsilon=0`; the gradient is then
    0 where a channel is constant). The statistics are computed in float32.
    With C=256 it has 1,536 parameters: 512 in `cfc` and 4 * 256 in the
    normalisation (of which 512 trainable).

    Volumes and clips: the same layer takes 5-D inputs; each channel's mean
    and standard deviation then run over depth, height and width. The
    unbiased variance divides by `D*H*W - 1`, so a clip of D copies of one
    image gets a slightly smaller standard deviation than the image alone (by
    the factor `sqrt(D (HW - 1) / (DHW - 1))`): the 2-D weights inflated do not
    give the image's output exactly.

    Args:
        epsilon: float >= 0, added to each channel's variance before the
            square root. Defaults to 1e-5 (the authors' current code); 0 gives
            their first version.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return the channel gate, shape
            `(batch, C)` (for volumes too).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = StyleRecalibration()(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, epsilon=1e-5, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_number("epsilon", epsilon)
        if epsilon < 0:
            raise ValueError(
                f"`epsilon` must be a finite non-negative number. Received: epsilon={epsilon!r}"
            )
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        # (C, 2): the weights of the mean and of the std of each channel.
        self.cfc = self.add_weight(name="cfc", shape=(channels, 2), initializer="zeros")
        self.norm = batch_norm("norm", (None, channels), self.dtype_policy)
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        rank = len(inputs.shape)
        axes = ka_ops.spatial_axes(self.data_format, rank)
        x = ops.cast(inputs, "float32")
        shape = ops.shape(x)
        count = 1
        for axis in axes:
            count = count * shape[axis]
        count = ops.cast(count, "float32")
        mean = ops.mean(x, axis=axes)
        centred = x - ka_ops.expand_channels(mean, self.data_format, rank)
        variance = ops.sum(ops.square(centred), axis=axes) / ops.maximum(count - 1.0, 1.0)
        style = ops.stack([mean, _safe_sqrt(variance + self.epsilon)], axis=-1)  # (batch, C, 2)
        cfc = ops.cast(self.cfc, "float32")
        logits = ops.cast(ops.sum(style * cfc, axis=-1), self.compute_dtype)
        gate = ops.sigmoid(self.norm(logits, training=training))
        outputs = inputs * ka_ops.expand_channels(gate, self.data_format, rank)
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config
