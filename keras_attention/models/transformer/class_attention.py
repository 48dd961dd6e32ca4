import keras
from keras import ops

from keras_attention.models.transformer import _heads


@keras.saving.register_keras_serializable(package="keras_attention")
class ClassAttention(keras.layers.Layer):
    """Class attention: the class token (token 0) attends to all tokens, itself included.

    Reference: Touvron et al., "Going deeper with Image Transformers" (CaiT),
    ICCV 2021 (https://arxiv.org/abs/2103.17239), as VOLO uses it: timm's
    `ClassAttention` (`timm/models/volo.py`). The query is `Dense(C)` named
    `q` of token 0 only; keys and values come from one `Dense(2C)` named `kv`
    of every token, split as (k|v, heads, C / heads); per-head scaled
    dot-product attention (scale `1/sqrt(C / heads)`), then `Dense(C)` named
    `proj`. Only the class token's new embedding is returned: the block around
    it adds it to token 0 and leaves the other tokens as they are.

    Args:
        num_heads: int, the heads; they must divide the channels.
        qkv_bias: bool, whether `q` and `kv` have biases (timm's `qkv_bias`).
            Defaults to False.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tokens of shape `(batch, N, C)`, the class token first.

    Output shape:
        `(batch, 1, C)`: the class token's attention output.

    Example:

    >>> tokens = keras.ops.ones((2, 5, 32))
    >>> ClassAttention(num_heads=4)(tokens).shape
    (2, 1, 32)
    """

    def __init__(self, num_heads, qkv_bias=False, **kwargs):
        super().__init__(**kwargs)
        _heads.check_arguments(num_heads, qkv_bias)
        self.num_heads = int(num_heads)
        self.qkv_bias = qkv_bias

    def build(self, input_shape):
        channels = _heads.check_tokens(self, input_shape)
        dense = {"use_bias": self.qkv_bias, "dtype": self.dtype_policy}
        self.q = keras.layers.Dense(channels, name="q", **dense)
        self.kv = keras.layers.Dense(2 * channels, name="kv", **dense)
        self.proj = keras.layers.Dense(channels, dtype=self.dtype_policy, name="proj")
        for layer in (self.q, self.kv, self.proj):
            layer.build((None, None, channels))
        self.built = True

    def call(self, inputs):
        tokens, channels = ops.shape(inputs)[1], inputs.shape[-1]
        depth = channels // self.num_heads
        kv = ops.reshape(self.kv(inputs), (-1, tokens, 2, self.num_heads, depth))
        query = ops.reshape(self.q(inputs[:, :1]), (-1, 1, self.num_heads, depth))
        outputs = _heads.attend(query, kv[:, :, 0], kv[:, :, 1])
        return self.proj(ops.reshape(outputs, (-1, 1, channels)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "qkv_bias": self.qkv_bias})
        return config
