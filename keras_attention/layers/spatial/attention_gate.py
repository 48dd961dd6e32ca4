import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import conv
from keras_attention.layers.base import pointwise_conv


@keras.saving.register_keras_serializable(package="keras_attention")
class AttentionGate(ImageAttentionLayer):
    """Attention gate of Attention U-Net: a coarser gating signal selects skip-connection pixels.

    Takes images (4-D x and g) and volumes (5-D x and g), as the paper's 3-D
    CT network does.

    Reference: Oktay, Schlemper, Le Folgoc, Lee, Heinrich, Misawa, Mori,
    McDonagh, Hammerla, Kainz, Glocker and Rueckert, "Attention U-Net:
    Learning Where to Look for the Pancreas", MIDL 2018
    (https://arxiv.org/abs/1804.03999).

    Additive attention between a feature map `x` (the skip connection) and a
    gating signal `g` (coarser features from deeper in the network):
    `alpha = sigmoid(psi(relu(theta(x) + phi(g))))`, resampled bilinearly to
    x's size, then `W(alpha * x)`. As in the authors' code
    (ozan-oktay/Attention-Gated-Networks, `GridAttentionBlock2D`,
    "concatenation" mode), which produced the paper's results and differs
    from the paper's text: theta is a `sub_sample` x `sub_sample` convolution
    with that stride and no bias (the paper: a 1x1 on x at g's resolution);
    phi(g) (1x1, bias) is resampled bilinearly to theta's output size; psi is
    a 1x1 conv to one map (bias); and the gated map goes through an output
    transform W, a 1x1 conv (bias) + BatchNormalization. `sub_sample=1` gives
    the paper's 1x1 theta. With C = C_g = 256 and the default
    inter_channels: 230,913 parameters (230,401 trainable).

    Volumes: the authors' `GridAttentionBlock3D` (sub_sample_factor (2, 2, 2),
    the setting of their CT networks): theta is a `sub_sample`^3 convolution
    with that stride in depth, height and width, the 1x1 convolutions become
    1x1x1, and both resamplings are trilinear (PyTorch's
    `interpolate(mode="trilinear", align_corners=False)`). Sublayer names and
    order are the same in both ranks: 2-D weights inflate by path.

    Mixed precision: no softmax and no sum over positions: everything runs in
    the compute dtype (a sigmoid gate), with BatchNormalization's statistics in
    float32 (Keras's).

    Args:
        inter_channels: int >= 1 or None, the width of theta, phi and psi's
            input; None means `max(1, C // 2)`. Defaults to None.
        sub_sample: int >= 1, theta's kernel size and stride on every
            spatial axis; x must be at least this high and wide (and deep).
            Defaults to 2.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a list `[x, g]` of two 4-D (or two 5-D) maps in
            `data_format`: x the skip features (C channels), g the gating
            signal (any number of channels, any spatial size, usually half of
            x's).
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return alpha, shape
            `(batch, H, W, 1)` (channels_last) or `(batch, 1, H, W)`; for
            volumes `(batch, D, H, W, 1)` or `(batch, 1, D, H, W)`.

    Input shape:
        `[(batch, H, W, C), (batch, H_g, W_g, C_g)]` (channels_last) or
        `[(batch, C, H, W), (batch, C_g, H_g, W_g)]`; volumes
        `[(batch, D, H, W, C), (batch, D_g, H_g, W_g, C_g)]` or
        `[(batch, C, D, H, W), (batch, C_g, D_g, H_g, W_g)]`.

    Output shape:
        Same as x.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> g = keras.Input((None, None, 128))
    >>> y = AttentionGate()([x, g])
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, inter_channels=None, sub_sample=2, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("inter_channels", inter_channels, allow_none=True)
        check_positive_int("sub_sample", sub_sample)
        self.inter_channels = inter_channels
        self.sub_sample = sub_sample
        # Two inputs: `_split_shapes` checks them with messages that name them.
        self.input_spec = None

    def _split_shapes(self, input_shape):
        """Validates `[x_shape, g_shape]` and returns their channel counts."""
        shapes = list(input_shape) if isinstance(input_shape, (list, tuple)) else []
        if len(shapes) != 2 or not all(isinstance(s, (list, tuple)) for s in shapes):
            raise ValueError(
                f"{self.__class__.__name__} expects `inputs` to be a list [x, g] of "
                f"two 4-D (or two 5-D) maps. Received `inputs` with shape {input_shape}"
            )
        x_shape, g_shape = (tuple(s) for s in shapes)
        if len(x_shape) in (4, 5) and len(g_shape) != len(x_shape):
            raise ValueError(
                f"{self.__class__.__name__} expects a {len(x_shape)}-D gating signal `g`, "
                f"of the same rank as `x` ({len(x_shape)}-D). Received `g` with shape "
                f"{g_shape}"
            )
        gating_channels = self._input_channels(g_shape)
        channels = self._input_channels(x_shape)
        self._check_map_size(x_shape)
        return channels, gating_channels

    def _check_map_size(self, x_shape):
        """Raises a ValueError unless theta's `sub_sample` window fits in x's spatial sizes.

        A smaller map gives theta an empty output, which fails later with a
        backend shape error. Sizes unknown until run time (None) pass here.
        """
        sizes = ka_ops.shape_to_channels_last(tuple(x_shape), self.data_format)[1:-1]
        if any(size is not None and size < self.sub_sample for size in sizes):
            names = ("height", "width") if len(sizes) == 2 else ("depth", "height", "width")
            described = ", ".join(f"{n} {s}" for n, s in zip(names[:-1], sizes[:-1]))
            window = " x ".join(["`sub_sample`"] * len(sizes))
            raise ValueError(
                f"{self.__class__.__name__} needs `x` at least {window} "
                f"pixels (theta's window). Received: sub_sample={self.sub_sample} and `x` of "
                f"{described} and {names[-1]} {sizes[-1]}"
            )

    def build(self, input_shape):
        channels, gating_channels = self._split_shapes(input_shape)
        inter = self.inter_channels or max(1, channels // 2)
        rank, dtype = self.spatial_rank, self.dtype_policy
        # The convolutions run channels_last (inputs transposed in `call`).
        self.theta = conv(
            rank,
            "theta",
            inter,
            self.sub_sample,
            channels,
            dtype,
            strides=self.sub_sample,
            use_bias=False,
        )
        self.phi = pointwise_conv("phi", inter, gating_channels, dtype, rank=rank)
        self.psi = pointwise_conv("psi", 1, inter, dtype, rank=rank)
        self.output_conv = pointwise_conv("output_conv", channels, channels, dtype, rank=rank)
        self.output_norm = batch_norm("output_norm", (None,) * (rank + 1) + (channels,), dtype)
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        # `build` saw the first call's size only; later calls may bring smaller maps.
        self._check_map_size(inputs[0].shape)
        x, g = (ka_ops.to_channels_last(t, self.data_format) for t in inputs)
        theta = self.theta(x)
        phi = ka_ops.resize_linear(self.phi(g), ka_ops.spatial_shape(theta, "channels_last"))
        alpha = ops.sigmoid(self.psi(ops.relu(theta + phi)))
        alpha = ka_ops.resize_linear(alpha, ka_ops.spatial_shape(x, "channels_last"))
        outputs = self.output_norm(self.output_conv(alpha * x), training=training)
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        alpha = ka_ops.from_channels_last(alpha, self.data_format)
        return self._outputs(outputs, alpha, return_attention)

    def compute_output_shape(self, input_shape):
        self._split_shapes(input_shape)
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update({"inter_channels": self.inter_channels, "sub_sample": self.sub_sample})
        return config
