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

    Args:
        reduction: int, the query/key channel ratio; they have
            `max(1, C // reduction)` channels. Defaults to 8.
        recurrence: int, how many times the block is applied (sharing its
            weights). Defaults to 2.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the last pass's weights, shape
            `(batch, H, W, H + W)` whatever `data_format` is. For pixel (i, j),
            `[..., :H]` are the weights of the column pixels (k, j), k < H, with
            slot k = i zero (the pixel is counted in the row part), and
            `[..., H:]` those of the row pixels (i, k), k < W. They sum to 1.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 512))
    >>> y = CrissCrossAttention(recurrence=2)(x)
    >>> y.shape
    (None, None, None, 512)
    """

    def __init__(self, reduction=8, recurrence=2, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        check_positive_int("recurrence", recurrence)
        self.reduction = reduction
        self.recurrence = recurrence

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        inner = max(1, channels // self.reduction)
        self.query, self.key, self.value = query_key_value(channels, inner, self.dtype_policy)
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

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
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
