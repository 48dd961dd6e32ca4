import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_divides_channels
from keras_attention.layers.base import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class ShuffleAttention(ImageAttentionLayer):
    """Shuffle Attention (SA-Net): per-group channel and spatial gates, then a channel shuffle.

    Reference: Zhang and Yang, "SA-Net: Shuffle Attention for Deep
    Convolutional Neural Networks", ICASSP 2021
    (https://arxiv.org/abs/2102.00240).

    The C channels are split into `groups` contiguous groups and each group
    into two halves of n = C / (2 * groups) channels. The first half gets a
    channel gate: global average pooling, `sigmoid(cweight * s + cbias)`. The
    second half gets a spatial gate: GroupNorm with one channel a group
    (normalised over H x W, with its own affine weights), then
    `sigmoid(sweight * . + sbias)`. The n-vectors cweight, cbias, sweight,
    sbias and the GroupNorm's scale and shift are shared by all groups
    (6 * n parameters: 12 at C=256 with the default 64 groups). The gated
    halves are concatenated back in place and the channels shuffled across
    the two halves of C, as in the authors' code (wofmanaf/SA-Net), which
    keeps the GroupNorm's own affine weights beside sweight and sbias.
    cweight and sweight start at 0 and cbias and sbias at 1, so every gate is
    sigmoid(1) at initialisation.

    Volumes and clips: the channel gate pools, and the GroupNorm normalises
    over, all D*H*W positions (the authors' code with every spatial axis
    pooled; GroupNorm's biased variance, so a clip of equal frames is gated
    as the image). Positions are flattened to one axis inside.

    Mixed precision: its spatial means accumulate in float32
    (`keras_attention.ops.mean`) and GroupNormalization's statistics are
    float32 (Keras's); the gates run in the compute dtype.

    Args:
        groups: int >= 1; `2 * groups` must divide C. Defaults to 64.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the gate of every input
            channel at every position (before the shuffle, in the input's
            channel order), the same shape as the input (`(batch, D, H, W, C)`
            for a channels_last clip).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = ShuffleAttention(groups=64)(x)
    >>> y.shape
    (None, None, None, 256)
    """

    spatial_ranks = (2, 3)

    def __init__(self, groups=64, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("groups", groups)
        self.groups = groups

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        check_divides_channels(self.__class__.__name__, "groups", self.groups, channels, parts=2)
        half = channels // (2 * self.groups)
        for name, value in (
            ("cweight", "zeros"),
            ("cbias", "ones"),
            ("sweight", "zeros"),
            ("sbias", "ones"),
            ("norm_gamma", "ones"),
            ("norm_beta", "zeros"),
        ):
            setattr(self, name, self.add_weight(shape=(half,), initializer=value, name=name))
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        shape = ops.shape(x)
        spatial = shape[1:-1]
        channels = x.shape[-1]
        half = channels // (2 * self.groups)
        positions = 1
        for size in spatial:
            positions = positions * size
        # (batch, positions, groups, 2n): the positions flattened to one axis (at
        # most 4-D inside, for clips too), the two halves of each group side by side.
        grouped = ops.reshape(x, (-1, positions, self.groups, 2 * half))
        pooled = ka_ops.mean(grouped[..., :half], 1, keepdims=True)
        channel_gate = ops.sigmoid(pooled * self.cweight + self.cbias)
        normed = ka_ops.group_norm(
            ops.reshape(grouped[..., half:], (-1, positions, self.groups * half)),
            self.groups * half,
            ops.tile(self.norm_gamma, (self.groups,)),
            ops.tile(self.norm_beta, (self.groups,)),
        )
        normed = ops.reshape(normed, (-1, positions, self.groups, half))
        spatial_gate = ops.sigmoid(normed * self.sweight + self.sbias)
        channel_gate = ops.broadcast_to(channel_gate, ops.shape(spatial_gate))
        gate = ops.reshape(
            ops.concatenate([channel_gate, spatial_gate], axis=-1), (-1, positions, channels)
        )
        gated = ops.reshape(x, (-1, positions, channels)) * gate
        # Channel shuffle with 2 groups: channel s * C/2 + k moves to 2k + s.
        shuffled = ops.reshape(gated, (-1, positions, 2, channels // 2))
        shuffled = ops.reshape(ops.transpose(shuffled, (0, 1, 3, 2)), (-1, *spatial, channels))
        outputs = ka_ops.from_channels_last(shuffled, self.data_format)
        gate = ka_ops.from_channels_last(
            ops.reshape(gate, (-1, *spatial, channels)), self.data_format
        )
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups})
        return config
