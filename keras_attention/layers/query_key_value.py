"""The 1x1 query, key and value projections of the position-attention layers.

SAGAN's self-attention, DANet's position attention and CCNet's criss-cross
attention all project the input with three 1x1 convolutions named `query`,
`key` (both to a reduced depth) and `value` (back to C); the names are the
saved weight paths.
"""

from keras_attention.layers.base import pointwise_conv


def query_key_value(channels, depth, dtype, key_bias=True, rank=2):
    """The built `query`, `key` (`depth` filters) and `value` (`channels`) 1x1 convolutions.

    They run channels_last, so the weights do not depend on `data_format`;
    `rank=3` makes them 1x1x1 (for volumes and clips), with the same names.
    `key_bias=False` drops the key's bias: it adds the same energy to every key
    of a query, which the softmax over keys cancels.
    """
    query = pointwise_conv("query", depth, channels, dtype, rank=rank)
    key = pointwise_conv("key", depth, channels, dtype, rank=rank, use_bias=key_bias)
    value = pointwise_conv("value", channels, channels, dtype, rank=rank)
    return query, key, value
