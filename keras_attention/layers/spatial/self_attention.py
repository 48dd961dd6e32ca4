import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.query_key_value import query_key_value


@keras.saving.register_keras_serializable(package="keras_attention")
class SelfAttention2D(ImageAttentionLayer):
    """Self-attention over all positions of a feature map (SAGAN).

    Reference: Zhang, Goodfellow, Metaxas and Odena, "Self-Attention
    Generative Adversarial Networks", ICML 2019
    (https://arxiv.org/abs/1805.08318).

    1x1 convolutions give queries and keys of `C // reduction` channels and
    values of C channels. Each position attends to every position with
    `softmax_j(q_i . k_j)` (no 1/sqrt(d) scaling, softmax in float32), and the
    result is added back through a learnable scalar `gamma` initialised to 0:
    `outputs = gamma * o + inputs`, so the layer is exactly the identity at
    initialisation. The key convolution has no bias: it would add the same
    energy to every key of a query, which the softmax cancels.

    Without `return_attention` the product runs through
    `keras.ops.dot_product_attention`, which JAX and PyTorch GPUs fuse without
    storing the (HW x HW) matrix; with it, the matrix is formed explicitly.

    Args:
        reduction: int, queries and keys have `max(1, C // reduction)`
            channels. Defaults to 8.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the attention weights, shape
            `(batch, H * W, H * W)` (query positions x key positions, both in
            row-major order); each row sums to 1.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = SelfAttention2D(reduction=8)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    def __init__(self, reduction=8, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        self.reduction = reduction

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        depth = max(1, channels // self.reduction)
        self.query, self.key, self.value = query_key_value(
            channels, depth, self.dtype_policy, key_bias=False
        )
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        batch, height, width, channels = ops.shape(x)

        def positions(t):  # (batch, H, W, d) -> (batch, H * W, d)
            return ops.reshape(t, (batch, height * width, t.shape[-1]))

        query = positions(self.query(x))
        key = positions(self.key(x))
        value = positions(self.value(x))
        if return_attention:
            attended, attention = ka_ops.attend_with_weights(query, key, value)
        else:
            attention = None
            attended = ka_ops.attend(query, key, value)
        attended = ops.reshape(attended, (batch, height, width, channels))
        outputs = self.gamma * attended + x
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction})
        return config
