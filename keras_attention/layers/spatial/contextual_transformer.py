import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int

KEY_GROUPS = 4  # groups of the k x k key convolution (CotLayer)
SHARE_PLANES = 8  # channels that share one set of local weights
RADIX = 2  # the static and the dynamic context, fused


@keras.saving.register_keras_serializable(package="keras_attention")
class ContextualTransformer(ImageAttentionLayer):
    """Contextual Transformer (CoT) block: static context from keys, dynamic from attention.

    Reference: Li, Yao, Pan and Mei, "Contextual Transformer Networks for
    Visual Recognition", TPAMI 2022 (https://arxiv.org/abs/2107.12292).

    Follows `CotLayer` of the authors' released code (JDAI-CV/CoTNet,
    `models/cotnet.py` with `cupy_layers/aggregation_zeropad.py`):

    1. Static context `K1`: a k x k convolution in 4 groups (no bias) + BN +
       ReLU on the input (the keys).
    2. Local weights: `[x, K1]` -> 1x1 conv to C/2 (no bias) + BN + ReLU ->
       1x1 conv to k*k*C/8 (bias) -> GroupNorm in C/8 groups (each over its
       k*k slots at all positions, as PyTorch's): for every position, C/8
       sets of k*k weights, set `g` shared by the channels `c` with
       `c % (C/8) == g` (interleaved, as the CUDA kernel indexes).
    3. Dynamic context `K2`: values (1x1 conv, no bias, + BN) aggregated over
       each k x k window (zero padding) with those weights, then BN + swish.
    4. Fusion: global mean of `K1 + K2` -> 1x1 conv (max(C/2, 32), bias) + BN +
       ReLU -> 1x1 conv to 2C -> softmax over the two contexts per channel
       (float32) -> `a0 * K2 + a1 * K1`.

    Where the paper's equations leave the form open, the code is followed:
    the local weights are normalised by GroupNorm (no softmax over the
    window; a weight set's statistics span the whole map), and the two
    contexts are fused by the split-attention softmax of step 4. The
    aggregation is a per-position k x k mixing with no softmax, so
    `keras.ops.dot_product_attention` does not apply. The grouped key
    convolution runs as one convolution per group (the same result; fast and
    builtin on every backend and in TFLite). Memory grows linearly with H*W
    (the weights are k*k*C/8 per position).

    Args:
        kernel_size: int, odd, the window size k. Defaults to 3.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map; its channels must be a multiple of 8.
        training: whether the BatchNormalization layers use batch statistics.
        return_attention: if True, also return `{"local": (batch, H, W, C/8,
            k*k), "fusion": (batch, C, 2)}`: the normalised window weights per
            weight set (row-major window slots) and the softmax weights of the
            dynamic (0) and static (1) contexts, whatever `data_format` is.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = ContextualTransformer(kernel_size=3)(x)
    >>> y.shape
    (None, None, None, 256)
    """

    no_volume_reason = (
        "its local weights mix each k x k window of a 2-D map, as the authors' CUDA "
        "aggregation kernel does"
    )

    def __init__(self, kernel_size=3, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` must be odd (the window is centred). Received: "
                f"kernel_size={kernel_size}"
            )
        self.kernel_size = kernel_size

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        if channels % SHARE_PLANES:
            raise ValueError(
                f"ContextualTransformer needs channels divisible by {SHARE_PLANES} (the "
                f"weight sets and the {KEY_GROUPS} key groups). Received `inputs` with "
                f"{channels} channels"
            )
        k, policy = self.kernel_size, self.dtype_policy
        weight_sets = channels // SHARE_PLANES

        def conv(filters, size, name, use_bias, width, groups=1):
            layer = keras.layers.Conv2D(
                filters,
                size,
                padding="same",
                groups=groups,
                use_bias=use_bias,
                data_format="channels_last",
                dtype=policy,
                name=name,
            )
            layer.build((None, None, None, width))
            return layer

        def norm(name, width):
            return batch_norm(name, (None, None, None, width), policy)

        # `_static_context` applies the grouped kernel (`ka_ops.grouped_conv`).
        self.key_conv = conv(channels, k, "key_conv", False, channels, KEY_GROUPS)
        self.key_bn = norm("key_bn", channels)
        self.embed_conv = conv(channels // 2, 1, "embed_conv", False, 2 * channels)
        self.embed_bn = norm("embed_bn", channels // 2)
        self.weight_conv = conv(k * k * weight_sets, 1, "weight_conv", True, channels // 2)
        self.weight_norm = keras.layers.GroupNormalization(
            groups=weight_sets, epsilon=1e-5, dtype=policy, name="weight_norm"
        )
        self.weight_norm.build((None, None, None, k * k * weight_sets))
        self.value_conv = conv(channels, 1, "value_conv", False, channels)
        self.value_bn = norm("value_bn", channels)
        self.dynamic_bn = norm("dynamic_bn", channels)
        units = max(channels * RADIX // 4, 32)
        self.fuse_dense = keras.layers.Dense(units, dtype=policy, name="fuse_dense")
        self.fuse_dense.build((None, channels))
        self.fuse_bn = batch_norm("fuse_bn", (None, units), policy)
        self.select = keras.layers.Dense(RADIX * channels, dtype=policy, name="select")
        self.select.build((None, units))
        self.built = True

    def _static_context(self, x, training):
        keys = ka_ops.grouped_conv(x, self.key_conv.kernel, KEY_GROUPS)
        return ops.relu(self.key_bn(keys, training=training))

    def _aggregate(self, values, weights):
        """Each channel's k x k window mixed with its weight set (zero padding)."""
        k, pad = self.kernel_size, self.kernel_size // 2
        _, height, width, _ = ops.shape(values)
        padded = ops.pad(values, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        outputs = 0
        for index in range(k * k):
            i, j = divmod(index, k)
            # Channel c reads weight set c % (C/8): tile the C/8 sets 8 times.
            slot = ops.tile(weights[..., index :: k * k], (1, 1, 1, SHARE_PLANES))
            outputs = outputs + padded[:, i : i + height, j : j + width, :] * slot
        return outputs

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        channels = x.shape[-1]
        static = self._static_context(x, training)
        embedded = ops.concatenate([x, static], axis=-1)
        embedded = ops.relu(self.embed_bn(self.embed_conv(embedded), training=training))
        weights = self.weight_norm(self.weight_conv(embedded))  # (B, H, W, C/8 * k*k)
        values = self.value_bn(self.value_conv(x), training=training)
        dynamic = self.dynamic_bn(self._aggregate(values, weights), training=training)
        dynamic = dynamic * ops.sigmoid(dynamic)  # swish

        pooled = ka_ops.spatial_mean(dynamic + static, "channels_last")
        z = ops.relu(self.fuse_bn(self.fuse_dense(pooled), training=training))
        logits = ops.reshape(self.select(z), (-1, channels, RADIX))
        fusion = ka_ops.softmax_float32(logits, axis=-1)
        outputs = dynamic * fusion[:, None, None, :, 0] + static * fusion[:, None, None, :, 1]
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        attention = None
        if return_attention:
            window = self.kernel_size**2
            _, height, width, _ = ops.shape(x)
            local = ops.reshape(weights, (-1, height, width, channels // SHARE_PLANES, window))
            attention = {"local": local, "fusion": fusion}
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size})
        return config
