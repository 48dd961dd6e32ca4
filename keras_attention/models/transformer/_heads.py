"""What the two token attentions share: their arguments, the token check and the
scaled dot product."""

import math

import keras
from keras import ops

from keras_attention.layers.base import check_bool
from keras_attention.layers.base import check_positive_int


class TokenAttention(keras.layers.Layer):
    """Base of the token attentions: `num_heads` and `qkv_bias`, checked and saved.

    Not registered: only its subclasses are saved in `.keras` files.
    """

    def __init__(self, num_heads, qkv_bias=False, **kwargs):
        super().__init__(**kwargs)
        check_positive_int("num_heads", num_heads)
        check_bool("qkv_bias", qkv_bias)
        self.num_heads = int(num_heads)
        self.qkv_bias = qkv_bias

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "qkv_bias": self.qkv_bias})
        return config


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
    CPU). TensorFlow forms the logits in the input dtype, so float16 and
    bfloat16 run in float32 there, as in `keras_attention.ops.attend` (exp
    overflows float16 at 11; bfloat16 keeps 8 bits of the logits).
    """
    dtype = keras.backend.standardize_dtype(value.dtype)
    if keras.backend.backend() == "tensorflow" and dtype in ("float16", "bfloat16"):
        query, key, value = (ops.cast(t, "float32") for t in (query, key, value))
    scale = 1.0 / math.sqrt(query.shape[-1])
    return ops.cast(ops.dot_product_attention(query, key, value, scale=scale), dtype)
