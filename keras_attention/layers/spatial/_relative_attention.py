"""Multi-head softmax attention with 2-D relative position logits (BoTNet, HaloNet).

Shared by `BottleneckSelfAttention` and `HaloAttention`: both add to the
scaled query-key energies a logit per (query, key) pair from learned relative
height and width embeddings, in timm's layout (`height_rel`, `width_rel` of
`2 * window - 1` rows, row `k - q + window - 1` for a query at `q` and a key at
`k` along that axis). Both take the same head arguments (`num_heads`,
`key_dim`, `use_bias`, `scale_position_logits`) with timm's defaults.
"""

import keras
import numpy as np
from keras import ops

from keras_attention.layers.base import check_bool
from keras_attention.layers.base import check_divides_channels
from keras_attention.layers.base import check_positive_int


def check_head_args(num_heads, key_dim, use_bias, scale_position_logits):
    """Raises a ValueError naming the first invalid head argument."""
    check_positive_int("num_heads", num_heads)
    check_positive_int("key_dim", key_dim, allow_none=True)
    check_bool("use_bias", use_bias)
    check_bool("scale_position_logits", scale_position_logits)


def head_dims(layer, channels):
    """(key_dim, value_dim) per head of `layer` on `channels`; ValueError unless heads divide C.

    The values keep the input's width (`C // num_heads` per head); the queries
    and keys have `layer.key_dim`, or timm's default when it is None.
    """
    check_divides_channels(layer.__class__.__name__, "num_heads", layer.num_heads, channels)
    key_dim = layer.key_dim or default_key_dim(channels, layer.num_heads)
    return key_dim, channels // layer.num_heads


def add_relative_tables(layer, key_dim, key_height, key_width):
    """`layer`'s `height_rel` and `width_rel` weights for a (key_height x key_width) key grid.

    timm's initialisation: normal with standard deviation `key_dim ** -0.5`.
    """
    embedding = keras.initializers.RandomNormal(stddev=key_dim**-0.5)
    height_rel = layer.add_weight(
        shape=(2 * key_height - 1, key_dim), initializer=embedding, name="height_rel"
    )
    width_rel = layer.add_weight(
        shape=(2 * key_width - 1, key_dim), initializer=embedding, name="width_rel"
    )
    return height_rel, width_rel


def default_key_dim(channels, num_heads):
    """timm's query/key width per head: C rounded to a multiple of 8, split over heads.

    timm's `make_divisible(C, 8)`: to the nearest multiple of 8, one step up if
    that loses more than 10%.
    """
    rounded = max(8, int(channels + 4) // 8 * 8)
    if rounded < 0.9 * channels:
        rounded += 8
    return rounded // num_heads


def relative_index(queries, window):
    """(queries, window) int32: the embedding row of each (query, key) pair along one axis."""
    return (np.arange(window)[None, :] - np.arange(queries)[:, None] + window - 1).astype("int32")


def relative_logits(query, height_rel, width_rel, key_height, key_width):
    """The relative position logits of every query of a (qh x qw) grid to a (kh x kw) grid.

    `query` (N, qh, qw, heads, d); `height_rel` (2 kh - 1, d) and `width_rel`
    (2 kw - 1, d). Returns (N, heads, qh * qw, kh * kw) in `query`'s dtype:
    `q . height_rel[ky - qy + kh - 1] + q . width_rel[kx - qx + kw - 1]`. The
    tables are gathered per (query row, key row) pair, so the logits are two
    small einsums, with no (T x S x d) tensor formed.
    """
    query_height, query_width = query.shape[1], query.shape[2]
    rows = ops.take(height_rel, relative_index(query_height, key_height), axis=0)
    columns = ops.take(width_rel, relative_index(query_width, key_width), axis=0)
    by_row = ops.einsum("nyxhd,ykd->nhyxk", query, ops.cast(rows, query.dtype))
    by_column = ops.einsum("nyxhd,xkd->nhyxk", query, ops.cast(columns, query.dtype))
    # Batch and heads merged: the broadcast sum stays 5-D (TFLite slices and
    # int8 kernels take at most 5 dimensions); the same sums.
    by_row = ops.reshape(by_row, (-1, query_height, query_width, key_height, 1))
    by_column = ops.reshape(by_column, (-1, query_height, query_width, 1, key_width))
    logits = by_row + by_column
    heads = query.shape[3]
    return ops.reshape(logits, (-1, heads, query_height * query_width, key_height * key_width))


def attend(query, key, value, bias, scale, return_attention=False):
    """`softmax(scale * q k^T + bias) v` per head: outputs (N, T, heads, dv) and the weights.

    `query` (N, T, heads, d), `key` (N, S, heads, d), `value` (N, S, heads,
    dv), `bias` (N, heads, T, S). Without `return_attention` it runs through
    `keras.ops.dot_product_attention`, so a backend's fused kernel can run
    where it accepts an additive bias (not checked on a GPU here); the bias
    itself is a (T x S) tensor per head, so memory stays that of the
    attention matrix. float16 runs in float32: the energies and relative logits
    of large activations leave float16's range. So does bfloat16 on TensorFlow,
    which forms the logits in the input dtype (8 bits of them). The softmax is
    float32 on every path.
    """
    dtype = keras.backend.standardize_dtype(value.dtype)
    tensorflow = keras.backend.backend() == "tensorflow"
    if dtype == "float16" or (tensorflow and dtype == "bfloat16"):
        query, key, value, bias = (ops.cast(t, "float32") for t in (query, key, value, bias))
    if return_attention:
        logits = ops.einsum("nthd,nshd->nhts", ops.cast(query, "float32"), ops.cast(key, "float32"))
        logits = logits * scale + ops.cast(bias, "float32")
        weights = ops.cast(ops.softmax(logits, axis=-1), value.dtype)
        outputs = ops.einsum("nhts,nshd->nthd", weights, value)
        return ops.cast(outputs, dtype), ops.cast(weights, dtype)
    depth, value_depth = query.shape[-1], value.shape[-1]
    if not tensorflow and depth != value_depth:
        # JAX needs equal head sizes (PyTorch's fused kernels too); zero
        # channels change no dot product.
        width = max(depth, value_depth)
        pad = ((0, 0), (0, 0), (0, 0))
        query = ops.pad(query, pad + ((0, width - depth),))
        key = ops.pad(key, pad + ((0, width - depth),))
        value = ops.pad(value, pad + ((0, width - value_depth),))
    outputs = ops.dot_product_attention(query, key, value, bias=bias, scale=scale)
    return ops.cast(outputs[..., :value_depth], dtype), None


def relative_attention(query, key, value, layer, key_height, key_width, return_attention):
    """`layer`'s attention of a grid of queries over keys, with its relative position logits.

    `query` (N, qh, qw, heads, d) on a static grid, `key` (N, S, heads, d) and
    `value` (N, S, heads, dv) with S = key_height * key_width; `layer` holds
    `height_rel`, `width_rel` and `scale_position_logits` (timm scales the
    position logits with the energies, the papers do not). Returns `attend`'s
    (N, qh * qw, heads, dv) outputs and weights.
    """
    _, query_height, query_width, heads, key_dim = query.shape
    scale = key_dim**-0.5
    bias = relative_logits(
        ops.cast(query, "float32"), layer.height_rel, layer.width_rel, key_height, key_width
    )
    if layer.scale_position_logits:
        bias = bias * scale
    query = ops.reshape(query, (-1, query_height * query_width, heads, key_dim))
    return attend(query, key, value, bias, scale, return_attention)
