import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import conv
from keras_attention.layers.query_key_value import query_key_value


@keras.saving.register_keras_serializable(package="keras_attention")
class PositionAttention(ImageAttentionLayer):
    """DANet's position attention module (PAM): self-attention over all pixels.

    Reference: Fu, Liu, Tian, Li, Bao, Fang and Lu, "Dual Attention Network for
    Scene Segmentation", CVPR 2019 (https://arxiv.org/abs/1809.02983).

    1x1 convolutions (with biases, as in the authors' code) give queries and
    keys of `C // reduction` channels and values of C channels. Each pixel
    attends to every pixel with a softmax over the H*W positions of the
    unscaled query-key products, computed in float32. A learnable scalar
    `gamma`, initialised to 0, scales the aggregate, so `gamma * o + x` starts
    as the identity. The output is computed with `keras.ops.dot_product_attention`
    (through `keras_attention.ops.attend`: fused on PyTorch, and on JAX
    GPUs); only `return_attention=True` materialises the (H*W, H*W) matrix.

    On volumes and clips the projections are 1x1x1 and each voxel attends to
    all D*H*W voxels (the spatial axes are flattened to one first), with one
    softmax over them.

    Args:
        reduction: int, the query/key channel ratio; they have
            `max(1, C // reduction)` channels. Defaults to 8.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the attention weights, shape
            `(batch, H*W, H*W)`: row i holds the weights pixel i (row-major)
            gives to every pixel, summing to 1; `(batch, D*H*W, D*H*W)` for
            volumes (voxels in (depth, height, width) row-major order).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = PositionAttention(reduction=8)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, reduction=8, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        self.reduction = reduction

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        inner = max(1, channels // self.reduction)
        self.query, self.key, self.value = query_key_value(
            channels, inner, self.dtype_policy, rank=self.spatial_rank
        )
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        spatial = ops.shape(x)[1:-1]  # (H, W) or (D, H, W): static where known
        positions = spatial[0]
        for size in spatial[1:]:
            positions = positions * size
        channels = x.shape[-1]

        # The batch as -1 and static channel counts: a reshape TFLite can lower
        # with the batch left free (a run-time batch size there is not).
        def flat(t):  # (batch, [D,] H, W, d) -> (batch, [D*]H*W, d)
            return ops.reshape(t, (-1, positions, t.shape[-1]))

        query, key, value = flat(self.query(x)), flat(self.key(x)), flat(self.value(x))
        if return_attention:
            aggregate, attention = ka_ops.attend_with_weights(query, key, value)
        else:
            attention = None
            aggregate = ka_ops.attend(query, key, value)
        aggregate = ops.reshape(aggregate, (-1, *spatial, channels))
        outputs = ops.cast(self.gamma, x.dtype) * aggregate + x
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction})
        return config


@keras.saving.register_keras_serializable(package="keras_attention")
class ChannelAttention(ImageAttentionLayer):
    """DANet's channel attention module (CAM): attention between channel maps.

    Reference: Fu, Liu, Tian, Li, Bao, Fang and Lu, "Dual Attention Network for
    Scene Segmentation", CVPR 2019 (https://arxiv.org/abs/1809.02983).

    No convolutions: with A the (C, H*W) feature matrix, the energy is
    `A A^T` (C x C). As in the authors' code, each row is replaced by
    `max(row) - row` before the softmax over channels, so that similar channels
    get small weights. The energy sums H*W products and overflows float16, so
    it and the softmax are computed in float32. A learnable scalar `gamma`,
    initialised to 0, scales the aggregate: `gamma * o + x`.

    On volumes and clips A is (C, D*H*W): the energies sum over every voxel.
    So a clip of D identical frames has D times its frame's energies, and its
    softmax is sharper than the frame's: this layer is not invariant to
    inflating an image into a boring clip.

    Args:
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the attention weights, shape
            `(batch, C, C)` (for images and volumes alike): row c holds the
            weights channel c gives to every channel, summing to 1.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = ChannelAttention()(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def build(self, input_shape):
        self._input_channels(input_shape)
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        shape = ops.shape(x)
        features = ops.reshape(x, (shape[0], -1, shape[-1]))  # (batch, [D*]H*W, C)
        features32 = ops.cast(features, "float32")
        energy = ops.einsum("bnc,bnd->bcd", features32, features32)
        energy = ops.max(energy, axis=-1, keepdims=True) - energy
        attention = ops.cast(ops.softmax(energy, axis=-1), x.dtype)
        aggregate = ops.einsum("bcd,bnd->bnc", attention, features)
        outputs = ops.cast(self.gamma, x.dtype) * ops.reshape(aggregate, shape) + x
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, attention, return_attention)


@keras.saving.register_keras_serializable(package="keras_attention")
class DualAttention(ImageAttentionLayer):
    """The DANet head: position and channel attention branches, summed.

    Reference: Fu, Liu, Tian, Li, Bao, Fang and Lu, "Dual Attention Network for
    Scene Segmentation", CVPR 2019 (https://arxiv.org/abs/1809.02983).

    Each branch reduces the input to `C // 4` channels with a 3x3 convolution
    (no bias) + BatchNormalization + ReLU, applies its attention module
    (`PositionAttention` or `ChannelAttention`), and maps the result to
    `filters` channels with another 3x3 convolution + BN + ReLU. The two
    branch outputs are summed. This is the authors' head without its dropout
    and 1x1 classifiers.

    On volumes and clips the convolutions are 3x3x3 and the modules attend
    over the D*H*W voxels (see `PositionAttention` and `ChannelAttention`).

    Mixed precision: as in `PositionAttention` and `ChannelAttention` (their
    softmaxes and energies in float32); the convolutions run in the compute
    dtype, with BatchNormalization's statistics in float32 (Keras's).

    Args:
        filters: int or None, the output channels; None keeps the input's.
        reduction: int, the position module's query/key ratio (applied to the
            `C // 4` inner channels). Defaults to 8.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip, with at least 4
            channels.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return a dict: `"position"`, shape
            `(batch, H*W, H*W)` (`(batch, D*H*W, D*H*W)` for volumes), and
            `"channel"`, shape `(batch, C // 4, C // 4)`.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        `(batch, H, W, filters)` (channels_last) or `(batch, filters, H, W)`;
        `(batch, D, H, W, filters)` or `(batch, filters, D, H, W)` for volumes.

    Example:

    >>> x = keras.Input((None, None, 512))
    >>> y = DualAttention(filters=256)(x)
    >>> y.shape
    (None, None, None, 256)
    """

    spatial_ranks = (2, 3)

    def __init__(self, filters=None, reduction=8, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("filters", filters, allow_none=True)
        check_positive_int("reduction", reduction)
        self.filters = filters
        self.reduction = reduction

    def _filters(self, channels):
        return self.filters or channels

    def _conv_bn(self, filters, in_channels, name):
        """A 3x3 (3x3x3) convolution (no bias) and its BatchNormalization, built."""
        rank = self.spatial_rank
        convolution = conv(
            rank,
            f"{name}_conv",
            filters,
            3,
            in_channels,
            self.dtype_policy,
            padding="same",
            use_bias=False,
        )
        shape = (None,) * (rank + 1) + (filters,)
        return convolution, batch_norm(f"{name}_bn", shape, self.dtype_policy)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        if channels < 4:
            raise ValueError(
                "DualAttention reduces its input to C // 4 channels, so it needs "
                f"at least 4. Received `inputs` with shape {tuple(input_shape)}"
            )
        inner, filters = channels // 4, self._filters(channels)
        inner_shape = (None,) * (self.spatial_rank + 1) + (inner,)
        # Everything runs channels_last (the input is transposed in `call`), so
        # the weights are the same whatever `data_format` is.
        self.position_in_conv, self.position_in_bn = self._conv_bn(inner, channels, "position_in")
        self.position_attention = PositionAttention(
            self.reduction,
            data_format="channels_last",
            dtype=self.dtype_policy,
            name="position_attention",
        )
        self.position_attention.build(inner_shape)
        self.position_out_conv, self.position_out_bn = self._conv_bn(filters, inner, "position_out")
        self.channel_in_conv, self.channel_in_bn = self._conv_bn(inner, channels, "channel_in")
        self.channel_attention = ChannelAttention(
            data_format="channels_last", dtype=self.dtype_policy, name="channel_attention"
        )
        self.channel_attention.build(inner_shape)
        self.channel_out_conv, self.channel_out_bn = self._conv_bn(filters, inner, "channel_out")
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)

        def conv_bn_relu(conv, norm, t):
            return ops.relu(norm(conv(t), training=training))

        position = self.position_attention(
            conv_bn_relu(self.position_in_conv, self.position_in_bn, x),
            return_attention=return_attention,
        )
        channel = self.channel_attention(
            conv_bn_relu(self.channel_in_conv, self.channel_in_bn, x),
            return_attention=return_attention,
        )
        attention = None
        if return_attention:
            (position, position_map), (channel, channel_map) = position, channel
            attention = {"position": position_map, "channel": channel_map}
        outputs = conv_bn_relu(
            self.position_out_conv, self.position_out_bn, position
        ) + conv_bn_relu(self.channel_out_conv, self.channel_out_bn, channel)
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, attention, return_attention)

    def compute_output_shape(self, input_shape):
        shape = ka_ops.shape_to_channels_last(input_shape, self.data_format)
        filters = self._filters(shape[-1])
        return ka_ops.shape_from_channels_last((*shape[:-1], filters), self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "reduction": self.reduction})
        return config
