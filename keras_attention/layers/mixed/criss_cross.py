import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.query_key_value import query_key_value


@keras.saving.register_keras_serializable(package="keras_attention")
class CrissCrossAttention(ImageAttentionLayer):
    """Criss-cross attention: each pixel attends to its row and its column.

    Reference: Huang, Wang, Huang, Huang, Wei and Liu, "CCNet: Criss-Cross
    Attention for Semantic Segmentation", ICCV 2019
    (https://arxiv.org/abs/1811.11721).

    1x1 convolutions give queries and keys of `C // reduction` channels and
    values of C channels. For each pixel, the query-key energies with the
    pixels of its column and of its row form one softmax over the H + W - 1
    positions of the cross (the pixel itself counted once), computed in
    float32; the values are aggregated with those weights, scaled by a
    learnable scalar `gamma` initialised to 0, and added to the input. The
    block is applied `recurrence` times with the same weights: two passes
    connect every pixel to every other. Memory grows with H*W*(H+W), not
    (H*W)^2 as in non-local attention computed without a fused kernel, as on
    TensorFlow (measured in docs/benchmarks.md).

    On volumes and clips the projections are 1x1x1 and each voxel attends
    along its depth line, its column and its row: one softmax over the
    D + H + W - 2 voxels of the 3-D cross (the voxel itself counted once, in
    the row part); `recurrence=3` connects every voxel to every other. Memory
    grows with D*H*W*(D+H+W). Every tensor stays at most 5-D: each direction
    is a batched matmul with the batch merged with one spatial axis.

    Mixed precision: the energies and the softmax are float32 in both forms;
    in 3-D the query and key projections are float32 too (their rounding
    dominated the error of the longer cross); the value projection and the
    aggregation run in the compute dtype.

    Args:
        reduction: int, the query/key channel ratio; they have
            `max(1, C // reduction)` channels. Defaults to 8.
        recurrence: int, how many times the block is applied (sharing its
            weights). Defaults to 2.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the last pass's weights, shape
            `(batch, H, W, H + W)` whatever `data_format` is. For pixel (i, j),
            `[..., :H]` are the weights of the column pixels (k, j), k < H, with
            slot k = i zero (the pixel is counted in the row part), and
            `[..., H:]` those of the row pixels (i, k), k < W. They sum to 1.
            For volumes, `(batch, D, H, W, D + H + W)`: for voxel (z, i, j),
            `[..., :D]` weigh the depth line (k, i, j) with slot k = z zero,
            `[..., D:D + H]` the column (z, k, j) with slot k = i zero, and
            `[..., D + H:]` the row (z, i, k).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 512))
    >>> y = CrissCrossAttention(recurrence=2)(x)
    >>> y.shape
    (None, None, None, 512)
    """

    spatial_ranks = (2, 3)

    def __init__(self, reduction=8, recurrence=2, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        check_positive_int("recurrence", recurrence)
        self.reduction = reduction
        self.recurrence = recurrence

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        inner = max(1, channels // self.reduction)
        self.query, self.key, self.value = query_key_value(
            channels, inner, self.dtype_policy, rank=self.spatial_rank
        )
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")
        self.built = True

    def _criss_cross(self, x, keep_column, gamma):
        """One pass: `x + gamma * aggregate` over each pixel's cross, and the weights."""
        query = ops.cast(self.query(x), "float32")
        key = ops.cast(self.key(x), "float32")
        value = self.value(x)
        column = ops.einsum("bhwd,bgwd->bhwg", query, key)  # (batch, H, W, H)
        row = ops.einsum("bhwd,bhvd->bhwv", query, key)  # (batch, H, W, W)
        # One softmax over both parts. The masked centre of `column` equals the
        # centre of `row`, so the shared peak is the cross's maximum; masking
        # by multiplying the exponentials keeps it exact and free of -inf.
        peak = ops.maximum(
            ops.max(column, axis=-1, keepdims=True), ops.max(row, axis=-1, keepdims=True)
        )
        column = ops.exp(column - peak) * keep_column
        row = ops.exp(row - peak)
        total = ops.sum(column, axis=-1, keepdims=True) + ops.sum(row, axis=-1, keepdims=True)
        column, row = column / total, row / total
        # Memory: gamma scales the (H, W, H+W) weights, not an (H, W, C)
        # aggregate; the column part is a matmul batched over (batch, W), so only
        # the value and its result are transposed; each part is added to x as
        # soon as it exists. Peak at 97x97x512 drops by a quarter.
        column_part = ops.matmul(
            ops.transpose(ops.cast(column * gamma, x.dtype), (0, 2, 1, 3)),
            ops.transpose(value, (0, 2, 1, 3)),
        )  # (batch, W, H, C)
        outputs = ops.matmul(ops.cast(row * gamma, x.dtype), value) + x
        outputs = ops.transpose(column_part, (0, 2, 1, 3)) + outputs
        return outputs, (ops.cast(column, x.dtype), ops.cast(row, x.dtype))

    def _float32_projections(self, x):
        """The query and key 1x1x1 convolutions of `x`, computed in float32.

        Their products are the energies of a softmax over D + H + W - 2
        voxels, applied `recurrence` times: queries and keys rounded to
        float16 moved the mixed_float16 output by 1.7x its rounding floor at
        input scale 10 (mixed_bfloat16: 3.2x); in float32, by 1.0x. The
        kernels are the variables as the layer reads them (already in the
        compute dtype), so only the products and sums gain precision.
        """
        x = ops.cast(x, "float32")
        projections = []
        for conv in (self.query, self.key):
            y = ops.conv(x, ops.cast(conv.kernel, "float32"), data_format="channels_last")
            if conv.use_bias:
                y = y + ops.cast(conv.bias, "float32")
            projections.append(y)
        return projections

    def _criss_cross_3d(self, x, keep_depth, keep_column, gamma, with_weights):
        """One pass over a (batch, D, H, W, C) volume: `x + gamma * aggregate`, and the weights.

        Three batched matmuls, one per direction, each with the batch merged
        with the other axes so that no tensor exceeds 5-D: the row's over
        (batch*D, H), the column's over (batch*D, W), the depth line's over
        (batch*H, W). The weights of one voxel are spread over three layouts
        and normalised by one softmax. The weights in the attention layout
        (depth line, column, row) are formed only `with_weights`.
        """
        depth, height, width = ops.shape(x)[1:4]
        channels = x.shape[-1]
        query, key = self._float32_projections(x)
        value = self.value(x)

        def rows(t):  # (batch, D, H, W, c) -> (batch*D, H, W, c)
            return ops.reshape(t, (-1, height, width, t.shape[-1]))

        def columns(t):  # (batch, D, H, W, c) -> (batch*D, W, H, c)
            return ops.reshape(ops.transpose(t, (0, 1, 3, 2, 4)), (-1, width, height, t.shape[-1]))

        def lines(t):  # (batch, D, H, W, c) -> (batch*H, W, D, c)
            return ops.reshape(ops.transpose(t, (0, 2, 3, 1, 4)), (-1, width, depth, t.shape[-1]))

        def energy(layout):
            q, k = layout(query), layout(key)
            return ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))

        row = energy(rows)  # (batch*D, H, W, W)
        column = energy(columns)  # (batch*D, W, H, H)
        line = energy(lines)  # (batch*H, W, D, D)

        # Each direction's per-voxel statistic, moved to (batch, D, H, W).
        def from_rows(t):
            return ops.reshape(t, (-1, depth, height, width))

        def from_columns(t):
            return ops.transpose(ops.reshape(t, (-1, depth, width, height)), (0, 1, 3, 2))

        def from_lines(t):
            return ops.transpose(ops.reshape(t, (-1, height, width, depth)), (0, 3, 1, 2))

        def to_columns(t):  # (batch, D, H, W) -> (batch*D, W, H, 1)
            return ops.reshape(ops.transpose(t, (0, 1, 3, 2)), (-1, width, height, 1))

        def to_lines(t):  # (batch, D, H, W) -> (batch*H, W, D, 1)
            return ops.reshape(ops.transpose(t, (0, 2, 3, 1)), (-1, width, depth, 1))

        # One softmax over the cross: the masked centres of `column` and `line`
        # equal the centre of `row`, so the shared peak is the cross's maximum;
        # masking by multiplying the exponentials keeps it exact and free of -inf.
        peak = ops.maximum(
            ops.maximum(from_rows(ops.max(row, axis=-1)), from_columns(ops.max(column, axis=-1))),
            from_lines(ops.max(line, axis=-1)),
        )
        row = ops.exp(row - ops.reshape(peak, (-1, height, width, 1)))
        column = ops.exp(column - to_columns(peak)) * keep_column
        line = ops.exp(line - to_lines(peak)) * keep_depth
        total = (
            from_rows(ops.sum(row, axis=-1))
            + from_columns(ops.sum(column, axis=-1))
            + from_lines(ops.sum(line, axis=-1))
        )
        row = row / ops.reshape(total, (-1, height, width, 1))
        column = column / to_columns(total)
        line = line / to_lines(total)

        def aggregate(weights, layout):
            return ops.matmul(ops.cast(weights * gamma, x.dtype), layout(value))

        outputs = ops.reshape(aggregate(row, rows), (-1, depth, height, width, channels)) + x
        column_part = ops.reshape(aggregate(column, columns), (-1, depth, width, height, channels))
        outputs = ops.transpose(column_part, (0, 1, 3, 2, 4)) + outputs
        line_part = ops.reshape(aggregate(line, lines), (-1, height, width, depth, channels))
        outputs = ops.transpose(line_part, (0, 3, 1, 2, 4)) + outputs
        weights = None
        if with_weights:
            weights = (
                ops.transpose(
                    ops.reshape(line, (-1, height, width, depth, depth)), (0, 3, 1, 2, 4)
                ),
                ops.transpose(
                    ops.reshape(column, (-1, depth, width, height, height)), (0, 1, 3, 2, 4)
                ),
                ops.reshape(row, (-1, depth, height, width, width)),
            )
            weights = tuple(ops.cast(w, x.dtype) for w in weights)
        return outputs, weights

    def _call_3d(self, x, return_attention):
        depth, height = ops.shape(x)[1:3]
        # 0 where a depth-line or column entry is the voxel itself.
        planes, rows = ops.arange(depth), ops.arange(height)
        keep_depth = ops.cast(ops.not_equal(planes[:, None], planes[None, :]), "float32")
        keep_column = ops.cast(ops.not_equal(rows[:, None], rows[None, :]), "float32")
        gamma = ops.cast(self.gamma, "float32")
        for i in range(self.recurrence):
            last = return_attention and i == self.recurrence - 1
            x, weights = self._criss_cross_3d(x, keep_depth, keep_column, gamma, last)
        attention = ops.concatenate(weights, axis=-1) if return_attention else None
        return x, attention

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        if len(x.shape) == 5:
            x, attention = self._call_3d(x, return_attention)
            outputs = ka_ops.from_channels_last(x, self.data_format)
            return self._outputs(outputs, attention, return_attention)
        rows = ops.arange(ops.shape(x)[1])
        # (H, 1, H): 0 where a column entry is the pixel itself, for every w.
        keep_column = ops.cast(ops.not_equal(rows[:, None, None], rows[None, None, :]), "float32")
        gamma = ops.cast(self.gamma, "float32")
        for _ in range(self.recurrence):
            x, weights = self._criss_cross(x, keep_column, gamma)
        outputs = ka_ops.from_channels_last(x, self.data_format)
        attention = ops.concatenate(weights, axis=-1) if return_attention else None
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction, "recurrence": self.recurrence})
        return config
