import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_non_negative_int
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import conv as conv_of_rank


class PreActivationBottleneck(keras.layers.Layer):
    """A pre-activation bottleneck residual unit (He et al., ECCV 2016), channels_last.

    BN-ReLU-1x1 conv (filters / 4) -> BN-ReLU-3x3 conv (filters / 4) ->
    BN-ReLU-1x1 conv (filters), plus the input. When the input channels differ
    from `filters`, the shortcut is a 1x1 convolution of the pre-activated
    input. Convolutions have no bias (each is followed by a BN or a sum).
    The rank comes from the input: 1x1x1 and 3x3x3 convolutions on 5-D input.
    Internal to `ResidualAttention`, which rebuilds it from its own config.
    """

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape):
        channels = input_shape[-1]
        rank = len(input_shape) - 2
        inner = max(1, self.filters // 4)

        def conv(filters, size, name, in_channels):
            return conv_of_rank(
                rank,
                name,
                filters,
                size,
                in_channels,
                self.dtype_policy,
                padding="same",
                use_bias=False,
            )

        def norm(name, in_channels):
            return batch_norm(name, (None,) * (rank + 1) + (in_channels,), self.dtype_policy)

        self.norm1, self.conv1 = norm("norm1", channels), conv(inner, 1, "conv1", channels)
        self.norm2, self.conv2 = norm("norm2", inner), conv(inner, 3, "conv2", inner)
        self.norm3, self.conv3 = norm("norm3", inner), conv(self.filters, 1, "conv3", inner)
        self.projection = None
        if channels != self.filters:
            self.projection = conv(self.filters, 1, "projection", channels)
        self.built = True

    def call(self, inputs, training=None):
        activated = ops.relu(self.norm1(inputs, training=training))
        shortcut = inputs if self.projection is None else self.projection(activated)
        x = self.conv1(activated)
        x = self.conv2(ops.relu(self.norm2(x, training=training)))
        x = self.conv3(ops.relu(self.norm3(x, training=training)))
        return x + shortcut


@keras.saving.register_keras_serializable(package="keras_attention")
class ResidualAttention(ImageAttentionLayer):
    """The attention module of the Residual Attention Network: trunk times (1 + soft mask).

    Reference: Wang, Jiang, Qian, Yang, Li, Zhang, Wang and Tang, "Residual
    Attention Network for Image Classification", CVPR 2017
    (https://arxiv.org/abs/1704.06904).

    All units are pre-activation bottleneck residual units (BN-ReLU-conv,
    1x1 -> 3x3 -> 1x1 with `filters // 4` inner channels). After `p` units, a
    trunk branch of `t` units gives T. The soft mask branch goes down `depth`
    times by 3x3 stride-2 max-pooling ("same" padding) with `r` units after
    each pooling, then back up by bilinear resizing to the exact size of the
    matching bottom-up tensor (so odd sizes work), adding it as an identity
    skip connection, with `r` units at each level on the way up; a last resize
    returns to the input size, and `2 x (BN-ReLU-1x1 conv)` and a sigmoid give
    the mask M in [0, 1]. The output, `(1 + M) * T`, goes through `p` more
    units. The released Caffe models also put a residual unit on each skip
    connection; this module does not.

    On volumes and clips every axis is pooled (3x3x3 stride-2 max-pooling),
    the way back up is trilinear (PyTorch's `interpolate(mode="trilinear",
    align_corners=False)`), and the units' and the mask's convolutions are
    1x1x1 and 3x3x3.

    Mixed precision: no softmax and no sum over positions: everything (pools,
    resizes, the sigmoid mask) runs in the compute dtype, with
    BatchNormalization's statistics in float32 (Keras's).

    Args:
        filters: int or None, the channels of every unit and of the output;
            None keeps the input's. When it differs from the input channels,
            the first unit has a 1x1 projection shortcut (so `p` must be >= 1).
        depth: int >= 1, the number of max-poolings of the mask branch.
            Defaults to 2.
        p: int >= 0, the units before and after the branches. Defaults to 1.
        t: int >= 1, the units of the trunk branch. Defaults to 2.
        r: int >= 1, the units per level of the mask branch, on each of the way
            down and the way up. Defaults to 1.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return the soft mask M, shape
            `(batch, H, W, filters)` (channels_last) or `(batch, filters, H, W)`;
            `(batch, D, H, W, filters)` or `(batch, filters, D, H, W)` for
            volumes.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        `(batch, H, W, filters)` (channels_last) or `(batch, filters, H, W)`;
        `(batch, D, H, W, filters)` or `(batch, filters, D, H, W)` for volumes.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = ResidualAttention(filters=128, depth=2)(x)
    >>> y.shape
    (None, None, None, 128)
    """

    spatial_ranks = (2, 3)

    def __init__(self, filters=None, depth=2, p=1, t=2, r=1, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("filters", filters, allow_none=True)
        check_positive_int("depth", depth)
        check_non_negative_int("p", p)
        check_positive_int("t", t)
        check_positive_int("r", r)
        self.filters = filters
        self.depth = depth
        self.p = p
        self.t = t
        self.r = r

    def _filters(self, channels):
        return self.filters or channels

    def _units(self, count, name, in_channels):
        filters = self._filters(in_channels)
        units = []
        for i in range(count):
            unit = PreActivationBottleneck(filters, dtype=self.dtype_policy, name=f"{name}_{i}")
            shape = (None,) * (self.spatial_rank + 1)
            unit.build((*shape, in_channels if i == 0 else filters))
            units.append(unit)
        return units

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        filters = self._filters(channels)
        if self.p == 0 and filters != channels:
            raise ValueError(
                "`p` must be at least 1 when `filters` differs from the input "
                "channels: the first unit projects the input. Received: p=0, "
                f"filters={filters} for an input with {channels} channels"
            )
        # Everything runs channels_last (the input is transposed in `call`), so
        # the weights are the same whatever `data_format` is. The mask levels
        # are kept in flat lists, `r` units per level.
        self.pre_units = self._units(self.p, "pre", channels)
        self.trunk_units = self._units(self.t, "trunk", filters)
        self.down_units = self._units(self.depth * self.r, "mask_down", filters)
        self.up_units = self._units(self.depth * self.r, "mask_up", filters)
        rank = self.spatial_rank
        shape = (None,) * (rank + 1) + (filters,)
        self.mask_norm1 = batch_norm("mask_norm1", shape, self.dtype_policy)
        self.mask_conv1 = conv_of_rank(
            rank, "mask_conv1", filters, 1, filters, self.dtype_policy, use_bias=False
        )
        self.mask_norm2 = batch_norm("mask_norm2", shape, self.dtype_policy)
        # The last convolution feeds the sigmoid directly, so it keeps a bias.
        self.mask_conv2 = conv_of_rank(rank, "mask_conv2", filters, 1, filters, self.dtype_policy)
        self.post_units = self._units(self.p, "post", filters)
        self.built = True

    def _run(self, units, x, training):
        for unit in units:
            x = unit(x, training=training)
        return x

    def _level(self, units, level):
        return units[level * self.r : (level + 1) * self.r]

    def _resize_like(self, x, reference):
        # Bilinear on images, trilinear on volumes: every spatial axis.
        return ka_ops.resize_linear(x, ops.shape(reference)[1:-1])

    def _max_pool(self, x):
        """3x3 (3x3x3) stride-2 max-pooling, "same" padding, channels_last."""
        # A volume's by 2-D max pools: LiteRT has no 3-D one, nor TensorFlow's CPU in float16.
        return ka_ops.max_pool(x, 3, strides=2, padding="same")

    def soft_mask(self, x, training=None):
        """The mask M in [0, 1] of a channels_last tensor with `filters` channels."""
        skips, h = [], x
        for level in range(self.depth):
            h = self._max_pool(h)
            h = self._run(self._level(self.down_units, level), h, training)
            skips.append(h)
        for level in reversed(range(self.depth)):
            if level < self.depth - 1:
                h = self._resize_like(h, skips[level]) + skips[level]
            h = self._run(self._level(self.up_units, level), h, training)
        h = self._resize_like(h, x)
        h = self.mask_conv1(ops.relu(self.mask_norm1(h, training=training)))
        h = self.mask_conv2(ops.relu(self.mask_norm2(h, training=training)))
        return ops.sigmoid(h)

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        x = self._run(self.pre_units, x, training)
        trunk = self._run(self.trunk_units, x, training)
        mask = self.soft_mask(x, training)
        outputs = self._run(self.post_units, (1 + mask) * trunk, training)
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        mask = ka_ops.from_channels_last(mask, self.data_format)
        return self._outputs(outputs, mask, return_attention)

    def compute_output_shape(self, input_shape):
        shape = ka_ops.shape_to_channels_last(input_shape, self.data_format)
        filters = self._filters(shape[-1])
        return ka_ops.shape_from_channels_last((*shape[:-1], filters), self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"filters": self.filters, "depth": self.depth, "p": self.p, "t": self.t, "r": self.r}
        )
        return config
