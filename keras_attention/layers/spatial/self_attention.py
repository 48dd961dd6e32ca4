import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import pointwise_conv


@keras.saving.register_keras_serializable(package="keras_attention")
class SelfAttention2D(ImageAttentionLayer):
    """Self-attention over all positions of a feature map, volume or clip (SAGAN).

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

    Despite its name (kept: it is the saved-file format), the layer takes 5-D
    volumes and clips too: 1x1x1 convolutions, and every position of every
    frame attends to all D * H * W positions. A clip whose frames are all one
    image gives, with the same (inflated) weights, the image's output in each
    frame.

    Without `return_attention` the product runs through
    `keras.ops.dot_product_attention`, which JAX and PyTorch GPUs fuse without
    storing the (HW x HW) matrix; with it, the matrix is formed explicitly.

    Mixed precision: the energies and the softmax over positions run in
    float32.

    Args:
        reduction: int, queries and keys have `max(1, C // reduction)`
            channels. Defaults to 8.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the attention weights, shape
            `(batch, H * W, H * W)` (query positions x key positions, both in
            row-major order); each row sums to 1. On 5-D inputs
            `(batch, D * H * W, D * H * W)`.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = SelfAttention2D(reduction=8)(x)
    >>> y.shape
    (None, None, None, 64)
    >>> SelfAttention2D()(keras.Input((8, 14, 14, 64))).shape  # a clip
    (None, 8, 14, 14, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, reduction=8, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        self.reduction = reduction

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        depth = max(1, channels // self.reduction)
        rank = self.spatial_rank
        # query_key_value's sublayers (same names and order), of the input's rank.
        self.query = pointwise_conv("query", depth, channels, self.dtype_policy, rank=rank)
        self.key = pointwise_conv(
            "key", depth, channels, self.dtype_policy, rank=rank, use_bias=False
        )
        self.value = pointwise_conv("value", channels, channels, self.dtype_policy, rank=rank)
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        sizes = tuple(ops.shape(x)[1:-1])  # (H, W) or (D, H, W)
        count = 1
        for size in sizes:
            count = count * size

        def positions(t):  # (batch, [D,] H, W, d) -> (batch, [D *] H * W, d)
            return ops.reshape(t, (-1, count, t.shape[-1]))

        query = positions(self.query(x))
        key = positions(self.key(x))
        value = positions(self.value(x))
        if return_attention:
            attended, attention = ka_ops.attend_with_weights(query, key, value)
        else:
            attention = None
            attended = ka_ops.attend(query, key, value)
        attended = ops.reshape(attended, (-1, *sizes, x.shape[-1]))
        outputs = self.gamma * attended + x
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction})
        return config
