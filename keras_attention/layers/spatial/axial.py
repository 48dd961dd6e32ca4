import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import is_int

AXES = ("height", "width")


def _check_span(span):
    pair = tuple(span) if isinstance(span, (tuple, list)) else (span, span)
    if len(pair) != 2 or any(not is_int(s) or s < 1 for s in pair):
        raise ValueError(
            f"`span` must be a positive integer or a pair of them (height, width). "
            f"Received: span={span!r}"
        )
    return tuple(pair)


@keras.saving.register_keras_serializable(package="keras_attention")
class AxialAttention(ImageAttentionLayer):
    """Position-sensitive axial attention: along the height, then along the width.

    Reference: Wang, Zhu, Green, Adam, Yuille and Chen, "Axial-DeepLab:
    Stand-Alone Axial-Attention for Panoptic Segmentation", ECCV 2020
    (https://arxiv.org/abs/2003.07853); axial attention: Ho, Kalchbrenner,
    Weissenborn and Salimans, "Axial Attention in Multidimensional
    Transformers", 2019 (https://arxiv.org/abs/1912.12180).

    Follows `AxialAttention` of csrhddlam/axial-deeplab (`lib/models/axialnet.py`,
    the PyTorch re-implementation from the first author's group that is
    widely used; the paper's own code is TensorFlow, in DeepLab2), applied as
    in its `AxialBlock`: the height block, then the width block, each C -> C
    with `num_heads` heads of `d = C / num_heads` channels. Per block and
    per line along the axis: a bias-free linear map to 2C + BN gives per
    head queries and keys (d/2 channels) and values (d); with learned
    relative embeddings `r` (a `(2d, 2 * span - 1)` table per block), the
    logits of query i and key j are
    `BN(q_i . k_j) + BN(q_i . r^q_{i-j}) + BN(k_j . r^k_{j-i})` (one BN
    per term and head, no 1/sqrt(d) scale), softmax over j in float32, and
    the output is `BN(sum_j a_ij v_j) + BN(sum_j a_ij r^v_{i-j})`.

    The relative terms and the BNs between the products and the softmax
    prevent `keras.ops.dot_product_attention`. The attention along an axis
    is `(length, length)` per line and head: memory grows as H*W*(H+W),
    exponent 1.5 in H*W.

    The code sets its embedding table to the axis length (`kernel_size`) and
    fails otherwise. Here `span` is the longest axis accepted: an axis of
    length L <= span uses the offsets -(L-1)..L-1 at the centre of the table,
    so L == span is the code exactly, and a smaller map sees the same
    relative embeddings (a map longer than `span` raises a ValueError where
    its size is known when the layer is called; inside a TensorFlow graph
    with unknown sizes, TensorFlow's gather fails at run time instead). The
    code's `stride` (average pooling after the width block) is left out: the
    output keeps the input size.

    Args:
        span: int or (height, width) pair, the longest axes accepted (the
            code's `kernel_size`, e.g. 56 for a 56x56 stage).
        num_heads: int, the heads (the code's `groups`); `2 * num_heads` must
            divide the channels. Defaults to 8.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map with H <= span[0] and W <= span[1].
        training: whether the BatchNormalization layers use batch statistics.
        return_attention: if True, also return `{"height": (batch, W,
            num_heads, H, H), "width": (batch, H, num_heads, W, W)}`: per line
            and head, query i (rows) over key j (columns, summing to 1),
            whatever `data_format` is.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((56, 56, 128))
    >>> y = AxialAttention(span=56, num_heads=8)(x)
    >>> y.shape
    (None, 56, 56, 128)
    """

    no_volume_reason = (
        "its two axial blocks attend along the height and then the width, each with its "
        "own relative embedding table"
    )

    def __init__(self, span, num_heads=8, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self._spans = _check_span(span)
        check_positive_int("num_heads", num_heads)
        self.span = span if is_int(span) else tuple(span)
        self.num_heads = num_heads

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        if channels % (2 * self.num_heads):
            raise ValueError(
                f"`num_heads` must divide the input channels into heads of an even size "
                f"(queries and keys take half). Received: num_heads={self.num_heads} for "
                f"an input with {channels} channels"
            )
        self._check_size(input_shape)
        depth = channels // self.num_heads
        policy = self.dtype_policy
        self.qkv, self.qkv_bn, self.similarity_bn, self.output_bn, self.relative = (
            [],
            [],
            [],
            [],
            [],
        )
        for axis, span in zip(AXES, self._spans):
            qkv = keras.layers.Dense(2 * channels, use_bias=False, dtype=policy, name=f"{axis}_qkv")
            qkv.build((None, channels))
            self.qkv.append(qkv)
            self.qkv_bn.append(
                batch_norm(f"{axis}_qkv_bn", (None, None, None, 2 * channels), policy)
            )
            # Energies stay in float32 through their BN (float16 overflows).
            self.similarity_bn.append(
                batch_norm(
                    f"{axis}_similarity_bn",
                    (None, 3 * self.num_heads, None, None, None),
                    "float32",
                    axis=1,
                )
            )
            self.output_bn.append(
                batch_norm(f"{axis}_output_bn", (None, None, None, 2 * channels), policy)
            )
            self.relative.append(
                self.add_weight(
                    shape=(2 * depth, 2 * span - 1),
                    initializer=keras.initializers.RandomNormal(stddev=depth**-0.5),
                    name=f"{axis}_relative",
                )
            )
        self.built = True

    def _check_size(self, shape):
        shape = ka_ops.shape_to_channels_last(tuple(shape), self.data_format)
        for axis, size, span in zip(AXES, shape[1:3], self._spans):
            # JAX traces unknown sizes as symbolic dimensions, not None.
            if isinstance(size, int) and size > span:
                raise ValueError(
                    f"AxialAttention with span={self.span!r} accepts a {axis} of at most "
                    f"{span}. Received `inputs` with shape {tuple(shape)} (channels_last "
                    f"order); raise `span`"
                )

    def _attend(self, x, block, training):
        """Attention along axis 2 of (batch, lines, length, C), one block's weights."""
        channels, heads = x.shape[-1], self.num_heads
        depth = channels // heads
        half = depth // 2
        length = ops.shape(x)[2]
        qkv = self.qkv_bn[block](self.qkv[block](x), training=training)
        qkv = ops.reshape(qkv, (-1, ops.shape(x)[1], length, heads, 2 * depth))
        query = ops.cast(qkv[..., :half], "float32")
        key = ops.cast(qkv[..., half:depth], "float32")
        value = qkv[..., depth:]

        # table[:, i, j] = r[:, i - j + span - 1]: offset i - j for query i, key j.
        span = self._spans[block]
        positions = ops.arange(length)
        index = positions[:, None] - positions[None, :] + (span - 1)
        table = ops.take(ops.cast(self.relative[block], "float32"), index, axis=1)  # (2d, L, L)
        query_table = table[:half]
        key_table = table[half:depth]
        value_table = ops.cast(table[depth:], x.dtype)

        content = ops.einsum("bnigc,bnjgc->bgnij", query, key)
        query_position = ops.einsum("bnigc,cij->bgnij", query, query_table)
        # k_j . r^k_{j-i}: the table at (j, i).
        key_position = ops.einsum("bnjgc,cji->bgnij", key, key_table)
        # (batch, 3 * heads, lines, L, L): the code's channel order (term, head).
        similarity = ops.concatenate([content, query_position, key_position], axis=1)
        similarity = self.similarity_bn[block](similarity, training=training)
        similarity = ops.sum(
            ops.reshape(similarity, (-1, 3, heads, ops.shape(x)[1], length, length)), axis=1
        )
        weights = ops.cast(ops.softmax(similarity, axis=-1), x.dtype)  # (B, heads, lines, L, L)

        content_out = ops.einsum("bgnij,bnjgc->bnigc", weights, value)
        position_out = ops.einsum("bgnij,cij->bnigc", weights, value_table)
        # The code's BN channels interleave the two outputs: 2 * (head, c) + term.
        stacked = ops.stack([content_out, position_out], axis=-1)
        stacked = ops.reshape(stacked, (-1, ops.shape(x)[1], length, 2 * channels))
        stacked = self.output_bn[block](stacked, training=training)
        outputs = ops.sum(ops.reshape(stacked, (-1, ops.shape(x)[1], length, channels, 2)), -1)
        return outputs, ops.transpose(weights, (0, 2, 1, 3, 4))

    def call(self, inputs, training=None, return_attention=False):
        self._check_size(inputs.shape)
        x = ka_ops.to_channels_last(inputs, self.data_format)
        # Height block on columns: (batch, W, H, C).
        columns, height_weights = self._attend(ops.transpose(x, (0, 2, 1, 3)), 0, training)
        x = ops.transpose(columns, (0, 2, 1, 3))
        x, width_weights = self._attend(x, 1, training)
        outputs = ka_ops.from_channels_last(x, self.data_format)
        attention = {"height": height_weights, "width": width_weights} if return_attention else None
        return self._outputs(outputs, attention, return_attention)

    def compute_output_spec(self, inputs, training=None, return_attention=False):
        # Stated, not traced: the torch backend traces unknown sizes as 83,
        # which the span check would reject.
        outputs = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if not return_attention:
            return outputs
        batch, height, width, _ = ka_ops.shape_to_channels_last(inputs.shape, self.data_format)
        heads = self.num_heads
        attention = {
            "height": keras.KerasTensor((batch, width, heads, height, height), self.compute_dtype),
            "width": keras.KerasTensor((batch, height, heads, width, width), self.compute_dtype),
        }
        return outputs, attention

    def get_config(self):
        config = super().get_config()
        config.update({"span": self.span, "num_heads": self.num_heads})
        return config
