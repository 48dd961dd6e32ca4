import keras
import numpy as np
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_bool
from keras_attention.layers.base import check_divides_channels
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import check_size
from keras_attention.layers.base import pointwise_conv


def relative_position_index(height, width):
    """(HW, HW) int32: row of the flattened (2H-1)(2W-1) table for each (query n, context m).

    The offset is `position_m - position_n`, shifted to be non-negative.
    """
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    rows, columns = rows.reshape(-1), columns.reshape(-1)
    delta_rows = rows[None, :] - rows[:, None] + height - 1
    delta_columns = columns[None, :] - columns[:, None] + width - 1
    return (delta_rows * (2 * width - 1) + delta_columns).astype("int32")


@keras.saving.register_keras_serializable(package="keras_attention")
class LambdaLayer(ImageAttentionLayer):
    """Lambda layer: linear functions (lambdas) of the context applied to each query.

    Reference: Bello, "LambdaNetworks: Modeling Long-Range Interactions
    Without Attention", ICLR 2021 (https://arxiv.org/abs/2102.08602).

    A bias-free 1x1 convolution gives queries (`num_heads` heads of `key_dim`,
    batch-normalised), keys (`key_dim`, shared by the heads: multi-query) and
    values (`C // num_heads`, batch-normalised). The keys are normalised by a
    softmax over positions (float32). The content lambda
    `lambda_c = softmax(K)^T V` (`key_dim x C/heads`) is shared by all
    positions; each position n has a position lambda `lambda_n`, either

    - local (`context_size=r`): `lambda_n[k] = sum_m E_k[m - n] v_m + b_k` over
      the `r x r` neighbourhood, i.e. an r x r convolution (`key_dim` filters)
      of every value channel, zero-padded; or
    - global (`context_size=None`): `lambda_n = sum_m E[m - n]^T v_m` over all
      positions with a learned (2H-1, 2W-1, key_dim) relative embedding, which
      fixes the feature size (`feature_size`).

    Each head's output is `q_n (lambda_c + lambda_n)`; the heads are
    concatenated (C channels).

    Mixed precision: the key softmax and the lambdas' sums over positions
    run in float32 and are cast back (lambda_c averages the values). The
    output is unbounded in the input scale: queries times values, it grows
    with the square of the scale (with inference-mode BatchNorms), so
    float16 overflows (inf) past some scale: past x35 for unit-normal inputs
    with the initial weights (C=64 or 256, 14x14, default arguments; the
    float32 output peaks near 50 at x1 and 5,000 at x10). bfloat16 has
    float32's range. No attention map is formed: the content path
    costs O(HW) memory; the local path stores `key_dim` outputs per value
    channel and pixel, O(HW * key_dim * C / heads); the global path gathers a
    (HW x HW x key_dim) embedding (quadratic in H*W).

    Matches timm's `LambdaLayer` (stride 1, intra-depth u=1) numerically with
    the same weights, in both modes: `qkv` is timm's `qkv.weight` transposed,
    `norm_q`/`norm_v` its BatchNorms, `position_conv` its `conv_lambda`
    (kernel `weight[:, 0, :, :, 0]` moved to (r, r, 1, key_dim)),
    `position_embedding` its `pos_emb`.

    Args:
        num_heads: int, query heads; must divide C. Defaults to 4.
        key_dim: int, query/key channels (the lambdas' depth). Defaults to 16.
        context_size: odd int or None, the side r of the local context of the
            position lambdas, or None for global relative embeddings. Defaults
            to 9.
        feature_size: int or `(height, width)`, required with
            `context_size=None` (the only size the layer then accepts), and
            unused otherwise (must be None).
        use_bias: bool, biases in the query/key/value convolution. Defaults to
            False (timm's `qkv_bias`).
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map.
        training: bool, the BatchNormalizations' mode.
        return_attention: if True, also return a dict: `"keys"`, the
            normalised keys `(batch, H * W, key_dim)` (each column sums to 1
            over positions), and `"content_lambda"`, `(batch, key_dim, C //
            num_heads)`.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = LambdaLayer(num_heads=4, key_dim=16, context_size=9)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    no_volume_reason = (
        "its position lambdas are 2-D: an r x r convolution, or relative embeddings of "
        "(2H - 1) x (2W - 1) offsets"
    )

    def __init__(
        self,
        num_heads=4,
        key_dim=16,
        context_size=9,
        feature_size=None,
        use_bias=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("num_heads", num_heads)
        check_positive_int("key_dim", key_dim)
        check_positive_int("context_size", context_size, allow_none=True)
        if context_size is not None and context_size % 2 == 0:
            raise ValueError(
                f"`context_size` must be odd (a centred r x r context) or None. "
                f"Received: context_size={context_size!r}"
            )
        feature_size = check_size("feature_size", feature_size, allow_none=True)
        if (context_size is None) != (feature_size is not None):
            raise ValueError(
                "`feature_size` is required with context_size=None (global relative "
                "embeddings) and must be None with a local context. Received: "
                f"feature_size={feature_size!r}, context_size={context_size!r}"
            )
        check_bool("use_bias", use_bias)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.context_size = context_size
        self.feature_size = feature_size
        self.use_bias = use_bias

    def _check_spatial_size(self, shape):
        if self.feature_size is None:
            return
        size = ka_ops.shape_to_channels_last(tuple(shape), self.data_format)[1:3]
        if any(isinstance(s, int) and s != f for s, f in zip(size, self.feature_size)):
            raise ValueError(
                f"{self.__class__.__name__} with context_size=None was created with "
                f"feature_size={self.feature_size} (its relative embeddings fix the "
                f"size); received `inputs` of spatial size {tuple(size)}. Set "
                f"`feature_size` to the input's (height, width), or use a local "
                f"`context_size`."
            )

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self._check_spatial_size(input_shape)
        check_divides_channels(self.__class__.__name__, "num_heads", self.num_heads, channels)
        key_dim, value_dim = self.key_dim, channels // self.num_heads
        self._value_dim = value_dim
        queries = self.num_heads * key_dim
        self.qkv = pointwise_conv(
            "qkv",
            queries + key_dim + value_dim,
            channels,
            self.dtype_policy,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.RandomNormal(stddev=channels**-0.5),
        )
        self.norm_q = batch_norm("norm_q", (None, None, None, queries), self.dtype_policy)
        self.norm_v = batch_norm("norm_v", (None, None, None, value_dim), self.dtype_policy)
        if self.context_size is not None:
            self.position_conv = keras.layers.Conv2D(
                key_dim,
                self.context_size,
                padding="same",
                kernel_initializer=keras.initializers.RandomNormal(stddev=key_dim**-0.5),
                data_format="channels_last",
                dtype=self.dtype_policy,
                name="position_conv",
            )
            self.position_conv.build((None, None, None, 1))
        else:
            height, width = self.feature_size
            self.position_embedding = self.add_weight(
                shape=(2 * height - 1, 2 * width - 1, key_dim),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                name="position_embedding",
            )
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        self._check_spatial_size(inputs.shape)
        x = ka_ops.to_channels_last(inputs, self.data_format)
        _, height, width, _ = ops.shape(x)
        heads, key_dim, value_dim = self.num_heads, self.key_dim, self._value_dim
        queries = heads * key_dim
        qkv = self.qkv(x)
        # A split, not slices: see HaloAttention (the gradient is one concat).
        query, key, value_map = ops.split(qkv, [queries, queries + key_dim], axis=-1)
        query = self.norm_q(query, training=training)
        query = ops.reshape(query, (-1, height * width, heads, key_dim))
        key = ops.reshape(key, (-1, height * width, key_dim))
        value_map = self.norm_v(value_map, training=training)
        value = ops.reshape(value_map, (-1, height * width, value_dim))

        # Softmax over positions (axis 1) and the sum over positions, in float32;
        # lambda_c averages the values, so it is as bounded as they are.
        key32 = ops.softmax(ops.cast(key, "float32"), axis=1)
        key = ops.cast(key32, value.dtype)
        content_lambda = ops.einsum("bmk,bmv->bkv", key32, ops.cast(value, "float32"))
        content_lambda = ops.cast(content_lambda, value.dtype)
        outputs = ops.einsum("bnhk,bkv->bnhv", query, content_lambda)
        outputs = outputs + self._position_outputs(query, value_map, value)
        outputs = ops.reshape(outputs, (-1, height, width, heads * value_dim))
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        attention = {"keys": key, "content_lambda": content_lambda} if return_attention else None
        return self._outputs(outputs, attention, return_attention)

    def _position_outputs(self, query, value_map, value):
        """q_n lambda_n per head: (batch, HW, heads, C / heads)."""
        if self.context_size is None:
            height, width = self.feature_size
            table = ops.reshape(self.position_embedding, (-1, self.key_dim))
            embedding = ops.take(table, relative_position_index(height, width), axis=0)
            embedding = ops.cast(embedding, "float32")  # (HW_n, HW_m, key_dim)
            # A sum over all positions: float32, then back.
            position_lambda = ops.einsum("nmk,bmv->bnkv", embedding, ops.cast(value, "float32"))
            position_lambda = ops.cast(position_lambda, value.dtype)
            return ops.einsum("bnhk,bnkv->bnhv", query, position_lambda)
        # Every value channel convolved on its own: channels become the batch.
        _, height, width, _ = ops.shape(value_map)
        channels = ops.reshape(ops.transpose(value_map, (0, 3, 1, 2)), (-1, height, width, 1))
        position_lambda = self.position_conv(channels)  # (B * V, H, W, key_dim)
        position_lambda = ops.reshape(
            position_lambda, (-1, self._value_dim, height * width, self.key_dim)
        )
        return ops.einsum("bnhk,bvnk->bnhv", query, position_lambda)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "context_size": self.context_size,
                "feature_size": self.feature_size,
                "use_bias": self.use_bias,
            }
        )
        return config
