import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_non_negative_int
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import pointwise_conv
from keras_attention.layers.spatial import _relative_attention as relative


@keras.saving.register_keras_serializable(package="keras_attention")
class HaloAttention(ImageAttentionLayer):
    """Blocked local self-attention: each block of queries attends to its haloed neighbourhood.

    Reference: Vaswani, Ramachandran, Srinivas, Parmar, Hechtman and Shlens,
    "Scaling Local Self-Attention for Parameter Efficient Visual Backbones",
    CVPR 2021 (https://arxiv.org/abs/2103.12731).

    The map is cut into non-overlapping `block_size x block_size` blocks of
    queries. The keys and values of a block come from the block grown by
    `halo_size` pixels on every side (a window of `w = block_size + 2 *
    halo_size`), zero-padded at the borders. Per head,
    `softmax(q k^T / sqrt(key_dim) + r)` over the `w * w` window, with the
    relative logit `r = q . height_rel[ky - qy + w - 1] + q . width_rel[kx - qx
    + w - 1]` (query coordinates inside the block, key coordinates inside the
    window; `2w - 1` embedding rows each). Keys and values of the zero padding
    are zero, so their logits are the relative term alone and they still take
    part in the softmax, as in timm. The heads' outputs are concatenated (C
    channels); no residual.

    With `strides=2` the output is half the size, as timm's: where 2 divides
    `block_size`, the queries are those of every second row and column (a
    strided 1x1 query convolution), each block of `block_size / 2` squared
    queries attending to its full window, the relative rows indexed by the
    query's position in that smaller block (timm's layout); otherwise the
    stride-1 output is average-pooled 2x2.

    H and W must be multiples of `block_size` (a ValueError says so wherever
    the size is known; no padding, as in timm). Matches timm's `HaloAttn`
    (`avg_down=False`) numerically with the same weights: `query`/`key_value` kernels
    are timm's `q.weight`/`kv.weight` transposed (`key_value` keeps timm's
    channel order: per head, its key then its value channels).

    The relative logits enter `keras.ops.dot_product_attention` as its
    `bias`, so fused kernels that take a bias can run; each block's attention
    is `block_size^2 x w^2`, so memory grows linearly with H*W (plus the
    gathered windows, `(w / block_size)^2` times the keys and values). The
    softmax runs in float32; under `mixed_float16`, and `mixed_bfloat16` on
    TensorFlow (which forms the logits in the input dtype), the whole
    attention does.

    Args:
        block_size: int, the side of a block of queries. Defaults to 8.
        halo_size: int >= 0, the pixels added around a block for its keys
            and values. Defaults to 3.
        num_heads: int, attention heads; must divide C. Defaults to 8.
        key_dim: int or None, query/key channels per head; None means timm's
            default, C rounded to a multiple of 8 divided by `num_heads`.
        use_bias: bool, biases in the query and key/value convolutions.
            Defaults to False (timm's `qkv_bias`).
        scale_position_logits: bool, scale the relative logits by
            `1 / sqrt(key_dim)` too (timm's `scale_pos_embed`). Defaults to False.
        strides: 1 or 2, the output stride (timm's `stride`). Defaults to 1.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map, H and W multiples of `block_size`.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the attention weights, shape
            `(batch, num_blocks, num_heads, q**2, w**2)` with `q = block_size`
            (`block_size / 2` for strided queries; blocks, queries in the
            block and keys in the window all row-major); each row sums to 1.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input, H and W divided by `strides`.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = HaloAttention(block_size=8, halo_size=3, num_heads=4)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    no_volume_reason = (
        "its query blocks, haloed windows and relative position embeddings are 2-D (rows "
        "and columns, timm's HaloAttn)"
    )

    def __init__(
        self,
        block_size=8,
        halo_size=3,
        num_heads=8,
        key_dim=None,
        use_bias=False,
        scale_position_logits=False,
        strides=1,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        if strides not in (1, 2) or isinstance(strides, bool):
            raise ValueError(f"`strides` must be 1 or 2. Received: strides={strides!r}")
        check_positive_int("block_size", block_size)
        check_non_negative_int("halo_size", halo_size)
        relative.check_head_args(num_heads, key_dim, use_bias, scale_position_logits)
        self.block_size = block_size
        self.halo_size = halo_size
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.use_bias = use_bias
        self.scale_position_logits = scale_position_logits
        self.strides = strides
        # timm: strided queries where the stride divides the block, else a 2x2 pool.
        self._query_stride = strides if block_size % strides == 0 else 1
        self._query_block = block_size // self._query_stride

    def _check_spatial_size(self, shape):
        size = ka_ops.shape_to_channels_last(tuple(shape), self.data_format)[1:3]
        if any(isinstance(s, int) and s % self.block_size for s in size):
            raise ValueError(
                f"{self.__class__.__name__} needs a height and width that are "
                f"multiples of `block_size`={self.block_size}. Received `inputs` "
                f"of spatial size {tuple(size)}. Pad or resize the map, or pick "
                f"a `block_size` that divides both."
            )

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self._check_spatial_size(input_shape)
        self._key_dim, self._value_dim = relative.head_dims(self, channels)
        projection = {
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.RandomNormal(stddev=channels**-0.5),
        }
        self.query = pointwise_conv(
            "query",
            self.num_heads * self._key_dim,
            channels,
            self.dtype_policy,
            strides=self._query_stride,
            **projection,
        )
        self.key_value = pointwise_conv(
            "key_value",
            self.num_heads * (self._key_dim + self._value_dim),
            channels,
            self.dtype_policy,
            **projection,
        )
        window = self.block_size + 2 * self.halo_size
        self.height_rel, self.width_rel = relative.add_relative_tables(
            self, self._key_dim, window, window
        )
        self.built = True

    def _window_index(self, rows, columns, padded_width):
        """Where each block's haloed window lies in the flattened padded grid, block by block.

        Window `(i, j)` starts at row `i * block_size`, column `j * block_size` of
        the grid padded by the halo; the (rows, columns, w, w) positions, flat.
        """
        window = self.block_size + 2 * self.halo_size
        offsets = ops.arange(window, dtype="int32")
        down = ops.arange(rows, dtype="int32")[:, None] * self.block_size + offsets  # (rows, w)
        across = ops.arange(columns, dtype="int32")[:, None] * self.block_size + offsets
        index = down[:, None, :, None] * padded_width + across[None, :, None, :]
        return ops.reshape(index, (-1,))

    def call(self, inputs, training=None, return_attention=False):
        self._check_spatial_size(inputs.shape)
        x = ka_ops.to_channels_last(inputs, self.data_format)
        _, height, width, _ = ops.shape(x)
        block, halo = self.block_size, self.halo_size
        window = block + 2 * halo
        heads, key_dim, value_dim = self.num_heads, self._key_dim, self._value_dim
        rows, columns = height // block, width // block
        step, query_block = self._query_stride, self._query_block

        # Queries: (batch * blocks, q, q, heads, key_dim), q the (strided) query block.
        query = ops.reshape(
            self.query(x), (-1, rows, query_block, columns, query_block, heads * key_dim)
        )
        query = ops.transpose(query, (0, 1, 3, 2, 4, 5))
        query = ops.reshape(query, (-1, query_block, query_block, heads, key_dim))

        # Keys and values: each block's haloed window, zeros beyond the border,
        # gathered in one `take` of the flattened grid, in the blocks' order.
        key_value = self.key_value(x)
        key_value = ops.pad(key_value, ((0, 0), (halo, halo), (halo, halo), (0, 0)))
        key_value = ops.reshape(
            key_value, (-1, (height + 2 * halo) * (width + 2 * halo), heads, key_dim + value_dim)
        )
        # Split before the windows overlap (fewer positions to copy), and a split,
        # not two slices: on TensorFlow each slice's gradient is a zero-padded
        # copy of the whole tensor; the split's is one concat.
        index = self._window_index(rows, columns, width + 2 * halo)
        key, value = (
            ops.reshape(ops.take(t, index, axis=1), (-1, window * window, heads, t.shape[-1]))
            for t in ops.split(key_value, [key_dim], axis=-1)
        )
        attended, attention = relative.relative_attention(
            query, key, value, self, window, window, return_attention
        )

        outputs = ops.reshape(
            attended, (-1, rows, columns, query_block, query_block, heads * value_dim)
        )
        outputs = ops.transpose(outputs, (0, 1, 3, 2, 4, 5))
        outputs = ops.reshape(outputs, (-1, height // step, width // step, heads * value_dim))
        if self.strides > step:
            outputs = ops.average_pool(outputs, 2, 2, data_format="channels_last")
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        if return_attention:
            attention = ops.reshape(
                attention, (-1, rows * columns, heads, query_block**2, window * window)
            )
        return self._outputs(outputs, attention, return_attention)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis in (1, 2) if self.data_format == "channels_last" else (2, 3):
            shape[axis] = None if shape[axis] is None else shape[axis] // self.strides
        return tuple(shape)

    def compute_output_spec(self, inputs, training=None, return_attention=False):
        # Shapes by arithmetic, not by tracing `call`: PyTorch traces with
        # placeholder sizes (not multiples of the block) and JAX with symbolic ones.
        outputs = keras.KerasTensor(
            self.compute_output_shape(inputs.shape), dtype=self.compute_dtype
        )
        if not return_attention:
            return outputs
        height, width = ka_ops.shape_to_channels_last(tuple(inputs.shape), self.data_format)[1:3]
        blocks = None
        if isinstance(height, int) and isinstance(width, int):
            blocks = (height // self.block_size) * (width // self.block_size)
        window = self.block_size + 2 * self.halo_size
        shape = (inputs.shape[0], blocks, self.num_heads, self._query_block**2, window**2)
        return outputs, keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "block_size": self.block_size,
                "halo_size": self.halo_size,
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "use_bias": self.use_bias,
                "scale_position_logits": self.scale_position_logits,
                "strides": self.strides,
            }
        )
        return config
