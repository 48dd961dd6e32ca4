"""What the two token attentions share: argument checks and the scaled dot product."""

import math

import keras
from keras import ops

from keras_attention.layers.base import check_bool
from keras_attention.layers.base import check_positive_int


def check_arguments(num_heads, qkv_bias):
    check_positive_int("num_heads", num_heads)
    check_bool("qkv_bias", qkv_bias)


def check_tokens(layer, input_shape):
    """The channels of a `(batch, N, C)` input; ValueError for another rank or for
    heads that do not divide C."""
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"{layer.__class__.__name__} expects tokens of shape (batch, N, C) with C "
            f"known. Received: input_shape={tuple(input_shape)}"
        )
    channels = int(input_shape[-1])
    if channels % layer.num_heads:
        raise ValueError(
            f"{layer.__class__.__name__} needs `num_heads` to divide the {channels} "
            f"channels. Received: num_heads={layer.num_heads}"
        )
    return channels


def attend(query, key, value):
    """softmax(q k^T / sqrt(d)) v over heads: (batch, T, heads, d) -> (batch, T, heads, d).

    `keras.ops.dot_product_attention` fuses on JAX/PyTorch GPUs (and PyTorch's
    CPU). TensorFlow forms the logits in the input dtype, so float16 runs in
    float32 there (exp overflows float16 at 11).
    """
    dtype = keras.backend.standardize_dtype(value.dtype)
    if keras.backend.backend() == "tensorflow" and dtype == "float16":
        query, key, value = (ops.cast(t, "float32") for t in (query, key, value))
    scale = 1.0 / math.sqrt(query.shape[-1])
    return ops.cast(ops.dot_product_attention(query, key, value, scale=scale), dtype)
