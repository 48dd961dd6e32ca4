import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_size
from keras_attention.layers.base import pointwise_conv
from keras_attention.layers.spatial import _relative_attention as relative


@keras.saving.register_keras_serializable(package="keras_attention")
class BottleneckSelfAttention(ImageAttentionLayer):
    """Multi-head self-attention over all positions with 2-D relative position logits (BoTNet).

    Reference: Srinivas, Lin, Parmar, Shlens, Abbeel and Vaswani,
    "Bottleneck Transformers for Visual Recognition", CVPR 2021
    (https://arxiv.org/abs/2101.11605).

    The layer that replaces the 3x3 convolution of a ResNet bottleneck in
    BoTNet's last stage. One bias-free 1x1 convolution gives queries, keys
    (`num_heads` heads of `key_dim` channels) and values (`num_heads` heads of
    `C // num_heads` channels). Each position attends to every position with
    `softmax(q k^T / sqrt(key_dim) + r)`, where the relative logit
    `r = q . height_rel[ky - qy + H - 1] + q . width_rel[kx - qx + W - 1]`
    comes from learned embeddings of the relative row and column offsets
    (`2H - 1` and `2W - 1` rows of `key_dim`). The heads' outputs are
    concatenated (C channels); there is no residual inside the layer.

    The embeddings fix the feature size, which is therefore an argument: an
    input of any other height or width raises a ValueError wherever its size is
    known (eager calls, models with a fixed input size). Matches timm's
    `BottleneckAttn` (stride 1) numerically with the same weights: the `qkv`
    kernel is timm's `qkv.weight` transposed, `height_rel`/`width_rel` are
    timm's `pos_embed.height_rel`/`width_rel`.

    The relative logits enter `keras.ops.dot_product_attention` as its
    `bias`, so a backend's fused kernel can run where it accepts an additive
    bias, but the bias is itself a (HW x HW) tensor per head: memory grows
    quadratically with H*W on every backend (measured: exponent 2.0 between
    56x56 and 97x97). The softmax runs in float32; under `mixed_float16`, and
    `mixed_bfloat16` on TensorFlow (which forms the logits in the input
    dtype), the whole attention does.

    Args:
        feature_size: int or `(height, width)`, the only spatial size the layer
            accepts (the size of its relative position embeddings).
        num_heads: int, attention heads; must divide C. Defaults to 4.
        key_dim: int or None, query/key channels per head; None means timm's
            default, C rounded to a multiple of 8 divided by `num_heads`.
        use_bias: bool, biases in the query/key/value convolution. Defaults to
            False (timm's `qkv_bias`).
        scale_position_logits: bool, scale the relative logits by
            `1 / sqrt(key_dim)` too (timm's `scale_pos_embed`). Defaults to False.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map of spatial size `feature_size`.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the attention weights, shape
            `(batch, num_heads, H * W, H * W)` (query positions x key positions,
            row-major); each row sums to 1.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`, with
        `(H, W) == feature_size`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((14, 14, 256))
    >>> y = BottleneckSelfAttention(feature_size=14, num_heads=4)(x)
    >>> y.shape
    (None, 14, 14, 256)
    """

    no_volume_reason = (
        "its relative position logits come from learned embeddings of the row and column "
        "offsets of a fixed 2-D feature size (timm's BottleneckAttn)"
    )

    def __init__(
        self,
        feature_size,
        num_heads=4,
        key_dim=None,
        use_bias=False,
        scale_position_logits=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        self.feature_size = check_size("feature_size", feature_size)
        relative.check_head_args(num_heads, key_dim, use_bias, scale_position_logits)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.use_bias = use_bias
        self.scale_position_logits = scale_position_logits

    def _check_spatial_size(self, shape):
        height, width = ka_ops.shape_to_channels_last(tuple(shape), self.data_format)[1:3]
        # Unknown sizes (None, or JAX's symbolic dimensions) pass.
        if any(isinstance(s, int) and s != f for s, f in zip((height, width), self.feature_size)):
            raise ValueError(
                f"{self.__class__.__name__} was created with "
                f"feature_size={self.feature_size} (its relative position "
                f"embeddings fix the size); received `inputs` of spatial size "
                f"{(height, width)}. Set `feature_size` to the input's (height, width)."
            )

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self._check_spatial_size(input_shape)
        self._key_dim, self._value_dim = relative.head_dims(self, channels)
        # One convolution in timm's channel order: all query heads, all key
        # heads, then all value heads; head-major within each.
        self.qkv = pointwise_conv(
            "qkv",
            2 * self.num_heads * self._key_dim + channels,
            channels,
            self.dtype_policy,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.RandomNormal(stddev=channels**-0.5),
        )
        self.height_rel, self.width_rel = relative.add_relative_tables(
            self, self._key_dim, *self.feature_size
        )
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        self._check_spatial_size(inputs.shape)
        x = ka_ops.to_channels_last(inputs, self.data_format)
        height, width = self.feature_size
        heads, key_dim, value_dim = self.num_heads, self._key_dim, self._value_dim
        qkv = self.qkv(x)
        split = heads * key_dim
        # A split, not slices: see HaloAttention (the gradient is one concat).
        query, key, value = ops.split(qkv, [split, 2 * split], axis=-1)
        query = ops.reshape(query, (-1, height, width, heads, key_dim))
        key = ops.reshape(key, (-1, height * width, heads, key_dim))
        value = ops.reshape(value, (-1, height * width, heads, value_dim))
        attended, attention = relative.relative_attention(
            query, key, value, self, height, width, return_attention
        )
        outputs = ops.reshape(attended, (-1, height, width, heads * value_dim))
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, attention, return_attention)

    def compute_output_spec(self, inputs, training=None, return_attention=False):
        # Shapes from the arguments, not by tracing `call`: PyTorch traces with
        # placeholder sizes and JAX with symbolic ones, which the fixed size rejects.
        outputs = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if not return_attention:
            return outputs
        positions = self.feature_size[0] * self.feature_size[1]
        shape = (inputs.shape[0], self.num_heads, positions, positions)
        return outputs, keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "feature_size": self.feature_size,
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "use_bias": self.use_bias,
                "scale_position_logits": self.scale_position_logits,
            }
        )
        return config
