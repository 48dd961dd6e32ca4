import keras
from keras import ops

from keras_attention.models.transformer import _heads


@keras.saving.register_keras_serializable(package="keras_attention")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head self-attention over tokens with one fused query/key/value projection.

    Reference: Vaswani et al., "Attention Is All You Need", NeurIPS 2017
    (https://arxiv.org/abs/1706.03762), in the layout of timm's VOLO
    `Attention` (`timm/models/volo.py`): one `Dense(3C)` named `qkv` whose
    output splits as (q|k|v, heads, C / heads), scaled dot-product attention
    per head (scale `1/sqrt(C / heads)`), and a `Dense(C)` named `proj`.
    `keras.layers.MultiHeadAttention` keeps three separate projections, so
    timm's fused tensor would not load into it one to one.

    Args:
        num_heads: int, the heads; they must divide the channels.
        qkv_bias: bool, whether `qkv` has a bias (timm's `qkv_bias`).
            Defaults to False.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tokens of shape `(batch, N, C)`.

    Output shape:
        Same as the input.

    Example:

    >>> tokens = keras.ops.ones((2, 5, 32))
    >>> MultiHeadSelfAttention(num_heads=4)(tokens).shape
    (2, 5, 32)
    """

    def __init__(self, num_heads, qkv_bias=False, **kwargs):
        super().__init__(**kwargs)
        _heads.check_arguments(num_heads, qkv_bias)
        self.num_heads = int(num_heads)
        self.qkv_bias = qkv_bias

    def build(self, input_shape):
        channels = _heads.check_tokens(self, input_shape)
        self.qkv = keras.layers.Dense(
            3 * channels, use_bias=self.qkv_bias, dtype=self.dtype_policy, name="qkv"
        )
        self.qkv.build((None, None, channels))
        self.proj = keras.layers.Dense(channels, dtype=self.dtype_policy, name="proj")
        self.proj.build((None, None, channels))
        self.built = True

    def call(self, inputs):
        tokens, channels = ops.shape(inputs)[1], inputs.shape[-1]
        qkv = ops.reshape(
            self.qkv(inputs), (-1, tokens, 3, self.num_heads, channels // self.num_heads)
        )
        outputs = _heads.attend(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        return self.proj(ops.reshape(outputs, (-1, tokens, channels)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "qkv_bias": self.qkv_bias})
        return config
