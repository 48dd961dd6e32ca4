import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_choice
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import pointwise_conv

MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")


def _check_bool(name, value):
    if not isinstance(value, bool):
        # ValueError, not TypeError: every bad argument raises one (DESIGN.md).
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")  # noqa: TRY004


@keras.saving.register_keras_serializable(package="keras_attention")
class NonLocalBlock(ImageAttentionLayer):
    """Non-local block: each position is a weighted sum of the features at all positions.

    Reference: Wang, Girshick, Gupta and He, "Non-local Neural Networks",
    CVPR 2018 (https://arxiv.org/abs/1711.07971).

    `y_i = sum_j f(x_i, x_j) g(x_j) / C(x)` and `z_i = W y_i + x_i`, with
    1x1 convolutions theta, phi, g to `inter_channels` and W back to C. The
    pairwise function f and its normalisation C(x) depend on `mode`:

    - `"embedded_gaussian"`: `softmax_j(theta_i . phi_j)` (the default);
    - `"gaussian"`: `softmax_j(x_i . x_j)` on the raw inputs (no theta, phi);
    - `"dot_product"`: `(theta_i . phi_j) / N`;
    - `"concatenation"`: `relu(w . [theta_i, phi_j]) / N`;

    where N is the number of key positions. Softmaxes and energies are
    computed in float32. W is followed by BatchNormalization whose scale
    starts at 0 (or, with `use_bn=False`, W itself starts at 0), so the block
    is exactly the identity at initialisation.

    With `sub_sample`, phi and g (never theta) are max-pooled 2x2 with stride
    2 and `"same"` padding, so odd sizes keep their last row and column
    (`ceil(H / 2) * ceil(W / 2)` key positions); on volumes and clips the
    pooling is 1x2x2, in space only, as in the paper's video models (the
    depth or time axis keeps all its positions). By default the pooling
    follows the phi and g convolutions (AlexHex7's Non-local_pytorch, mmcv's
    `NonLocal2d`/`NonLocal3d`); `pool_before=True` pools the input x before
    them, as the paper's own video code does (facebookresearch's
    video-nonlocal-net `nonlocal_helper.py`, pytorchvideo's
    `create_nonlocal`). The two differ: a max does not commute with a 1x1
    convolution. `scale=True` multiplies the `"embedded_gaussian"` logits
    by `inter_channels ** -0.5` before the softmax (the video code and
    mmcv's `use_scale`). The forms of the references:

    | reference | `pool_before` | `scale` |
    |---|---|---|
    | AlexHex7's `NONLocalBlock2D`/`3D` (the defaults) | False | False |
    | mmcv `NonLocal3d` (its default `use_scale=True`) | False | True |
    | video-nonlocal-net, pytorchvideo (`"softmax"`) | True | True |
    | pytorchvideo (`"dot_product"`, `mode="dot_product"`) | True | False |

    Their max-pooling drops an odd last row or column (no padding), so they
    equal this layer on even heights and widths. Convolutions carry a bias only
    where it can change the output: not phi's under a softmax over keys, not
    g's when the weights of a query sum to 1 (W's bias covers it), not theta's
    and phi's in `"concatenation"` (the projection's bias covers them), and not
    W's before BatchNormalization.

    In `"embedded_gaussian"` mode without `return_attention` the product runs
    through `keras.ops.dot_product_attention`, which JAX and PyTorch GPUs fuse
    without storing the attention matrix.

    Mixed precision: the energies, the softmaxes and, for "dot_product" and
    "concatenation", the weighted sums over positions run in float32. Those
    two modes are unbounded in the input scale once W is trained: the output
    grows with its cube ("dot_product": theta . phi times g) or square
    ("concatenation"), so float16 overflows (inf) past some scale; with
    random weights (uniform in +-0.5) on unit-normal 14x14 inputs, past x6
    (C=64) or x20 (C=16) for "dot_product" and past x55 (C=64) or x115 (C=16)
    for "concatenation". The softmax modes are bounded (their rows sum to 1).

    Args:
        mode: one of `"embedded_gaussian"`, `"gaussian"`, `"dot_product"`,
            `"concatenation"`.
        inter_channels: int or None, the channels of theta, phi and g; None
            means `max(1, C // 2)`.
        sub_sample: bool, max-pool phi and g 2x2 (1x2x2 on 5-D inputs).
            Defaults to True.
        pool_before: bool, with `sub_sample`, pool the input before the phi
            and g convolutions (the paper's video code) instead of their
            outputs (AlexHex7's code). Defaults to False.
        scale: bool, multiply the `"embedded_gaussian"` logits by
            `inter_channels ** -0.5` (the paper's video code); only that
            mode takes it. Defaults to False.
        use_bn: bool, BatchNormalization after W. Defaults to True.
        use_bias: bool, a bias in every 1x1 convolution, as the released code
            (and so its parameter count) has. False keeps only the biases that
            can change the output: theta's in `"embedded_gaussian"` (phi's
            cancels in the softmax; g's and W's are constant shifts that
            BatchNorm absorbs). Defaults to False.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return the pairwise weights
            `f / C(x)`, shape `(batch, H * W, N)` (query positions x key
            positions, row-major; N = H * W, or the pooled count with
            `sub_sample`); on 5-D inputs `(batch, D * H * W, N)` with
            N = D * H * W, or `D * ceil(H / 2) * ceil(W / 2)` with
            `sub_sample`.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = NonLocalBlock(mode="embedded_gaussian")(x)
    >>> y.shape
    (None, None, None, 64)
    >>> clip = keras.Input((8, 14, 14, 256))
    >>> video = NonLocalBlock(pool_before=True, scale=True)  # the video code's form
    >>> video(clip).shape
    (None, 8, 14, 14, 256)
    """

    spatial_ranks = (2, 3)

    def __init__(
        self,
        mode="embedded_gaussian",
        inter_channels=None,
        sub_sample=True,
        use_bn=True,
        pool_before=False,
        scale=False,
        use_bias=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        check_choice("mode", mode, MODES)
        check_positive_int("inter_channels", inter_channels, allow_none=True)
        _check_bool("sub_sample", sub_sample)
        _check_bool("use_bn", use_bn)
        _check_bool("pool_before", pool_before)
        _check_bool("scale", scale)
        _check_bool("use_bias", use_bias)
        if scale and mode != "embedded_gaussian":
            raise ValueError(
                "`scale` scales the logits of mode='embedded_gaussian' only. "
                f"Received: scale={scale!r} with mode={mode!r}"
            )
        self.mode = mode
        self.inter_channels = inter_channels
        self.sub_sample = sub_sample
        self.use_bn = use_bn
        self.pool_before = pool_before
        self.scale = scale
        self.use_bias = use_bias

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        inter = self.inter_channels or max(1, channels // 2)
        # Everything runs channels_last (see `call`), so the weights do not
        # depend on `data_format`.
        if self.mode != "gaussian":
            theta_bias = self.use_bias or self.mode != "concatenation"
            self.theta = self._conv(inter, "theta", theta_bias, channels)
            phi_bias = self.use_bias or self.mode == "dot_product"
            self.phi = self._conv(inter, "phi", phi_bias, channels)
        if self.mode == "concatenation":
            # The paper's w over [theta_i, phi_j]: a (2C' x 1) projection + bias.
            self.concat_kernel = self.add_weight(
                shape=(2 * inter, 1), initializer="glorot_uniform", name="concat_kernel"
            )
            self.concat_bias = self.add_weight(shape=(1,), initializer="zeros", name="concat_bias")
        normalised_by_count = self.mode in ("dot_product", "concatenation")
        self.g = self._conv(inter, "g", self.use_bias or normalised_by_count, channels)
        # Identity at initialisation: BN's scale starts at 0, or else W's kernel.
        self.w = self._conv(
            channels,
            "w",
            self.use_bias or not self.use_bn,
            inter,
            kernel_initializer="glorot_uniform" if self.use_bn else "zeros",
        )
        rank = self.spatial_rank
        if self.use_bn:
            self.bn = batch_norm(
                "bn",
                (None,) * (rank + 1) + (channels,),
                self.dtype_policy,
                gamma_initializer="zeros",
            )
        if self.sub_sample:
            # 2x2 in both ranks: clips and volumes are pooled 1x2x2, frame by
            # frame (see `call`), which needs no MaxPool3D (TensorFlow's CPU
            # has none for float16, LiteRT no builtin one).
            self.pool = keras.layers.MaxPooling2D(
                2, padding="same", data_format="channels_last", dtype=self.dtype_policy, name="pool"
            )
        self.built = True

    def _conv(self, filters, name, use_bias, channels, **kwargs):
        return pointwise_conv(
            name,
            filters,
            channels,
            self.dtype_policy,
            rank=self.spatial_rank,
            use_bias=use_bias,
            **kwargs,
        )

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        # (height, width) or (depth, height, width): static where known, else run-time.
        sizes = tuple(ops.shape(x)[1:-1])

        # The batch as -1 and static channel counts: a reshape TFLite can lower
        # with the batch left free (a run-time batch size there is not).
        def positions(t):  # (batch, [d,] h, w, c) -> (batch, [d *] h * w, c)
            count = 1
            for size in ops.shape(t)[1:-1]:
                count = count * size
            return ops.reshape(t, (-1, count, t.shape[-1]))

        def pool(t):
            if not self.sub_sample:
                return t
            if self.spatial_rank == 2:
                return self.pool(t)
            # 1x2x2: the frames as images, then the clip again.
            depth, height, width = ops.shape(t)[1:4]
            frames = self.pool(ops.reshape(t, (-1, height, width, t.shape[-1])))
            rows, columns = ops.shape(frames)[1:3]
            return ops.reshape(frames, (-1, depth, rows, columns, t.shape[-1]))

        if self.pool_before:  # the video code: phi and g see the pooled input
            pooled = pool(x)
            g = positions(self._project(self.g, pooled))
            key = positions(pooled if self.mode == "gaussian" else self._project(self.phi, pooled))
        else:  # AlexHex7's: phi's and g's outputs are pooled
            g = positions(pool(self._project(self.g, x)))
            key = positions(pool(x if self.mode == "gaussian" else self._project(self.phi, x)))
        query = positions(x if self.mode == "gaussian" else self._project(self.theta, x))

        if self.mode == "embedded_gaussian" and not return_attention:
            attention = None
            if self.scale:  # the same logits as `_pairwise`'s scaled ones
                query = query * (query.shape[-1] ** -0.5)
            y = ka_ops.attend(query, key, g)
        else:
            weights = self._pairwise(query, key)
            attention = ops.cast(weights, g.dtype)
            if self.mode in ("dot_product", "concatenation"):
                # Unnormalised sums can leave float16's range: keep float32.
                y = ops.cast(ops.matmul(weights, ops.cast(g, "float32")), g.dtype)
            else:  # softmax rows are at most 1
                y = ops.matmul(attention, g)
        y = self._project(self.w, ops.reshape(y, (-1, *sizes, y.shape[-1])))
        if self.use_bn:
            y = self.bn(y, training=training)
        outputs = ka_ops.from_channels_last(y + x, self.data_format)
        return self._outputs(outputs, attention, return_attention)

    def _project(self, conv, x):
        """The 1x1 (1x1x1) convolution `conv` of channels_last `x`.

        On clips it runs as a matmul over the channels with the Conv3D's own
        weights (the same map): TensorFlow's CPU Conv3D accumulates float16 in
        float16, which costs 3x the rounding error of its Conv2D or matmul.
        """
        if self.spatial_rank == 2:
            return conv(x)
        y = ops.matmul(x, ops.reshape(conv.kernel, conv.kernel.shape[-2:]))
        return y + conv.bias if conv.use_bias else y

    def _pairwise(self, query, key):
        """f(x_i, x_j) / C(x) in float32, shape (batch, queries, keys)."""
        query, key = ops.cast(query, "float32"), ops.cast(key, "float32")
        count = ops.cast(ops.shape(key)[1], "float32")
        if self.mode == "concatenation":
            # w . [theta_i, phi_j] = w_theta . theta_i + w_phi . phi_j + bias,
            # so the (queries x keys x 2C') concatenation is never formed.
            kernel = ops.cast(self.concat_kernel, "float32")
            inter = query.shape[-1]
            energy = (
                ops.matmul(query, kernel[:inter])
                + ops.transpose(ops.matmul(key, kernel[inter:]), (0, 2, 1))
                + ops.cast(self.concat_bias, "float32")
            )
            return ops.relu(energy) / count
        energy = ops.matmul(query, ops.transpose(key, (0, 2, 1)))
        if self.scale:
            energy = energy * (query.shape[-1] ** -0.5)
        if self.mode == "dot_product":
            return energy / count
        return ops.softmax(energy, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "inter_channels": self.inter_channels,
                "sub_sample": self.sub_sample,
                "use_bn": self.use_bn,
                "pool_before": self.pool_before,
                "scale": self.scale,
                "use_bias": self.use_bias,
            }
        )
        return config
