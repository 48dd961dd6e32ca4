import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class AttentionGate(ImageAttentionLayer):
    """Attention gate of Attention U-Net: a coarser gating signal selects skip-connection pixels.

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

    Mixed precision: no softmax and no sum over positions: everything runs in
    the compute dtype (a sigmoid gate), with BatchNormalization's statistics in
    float32 (Keras's).

    Args:
        inter_channels: int >= 1 or None, the width of theta, phi and psi's
            input; None means `max(1, C // 2)`. Defaults to None.
        sub_sample: int >= 1, theta's kernel size and stride; x must be at
            least this high and wide. Defaults to 2.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a list `[x, g]` of two 4-D maps in `data_format`: x the
            skip features (C channels), g the gating signal (any number of
            channels, any spatial size, usually half of x's).
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return alpha, shape
            `(batch, H, W, 1)` (channels_last) or `(batch, 1, H, W)`.

    Input shape:
        `[(batch, H, W, C), (batch, H_g, W_g, C_g)]` (channels_last) or
        `[(batch, C, H, W), (batch, C_g, H_g, W_g)]`.

    Output shape:
        Same as x.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> g = keras.Input((None, None, 128))
    >>> y = AttentionGate()([x, g])
    >>> y.shape
    (None, None, None, 64)
    """

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
                f"two 4-D maps. Received `inputs` with shape {input_shape}"
            )
        x_shape, g_shape = shapes
        if len(tuple(g_shape)) != 4:
            raise ValueError(
                f"{self.__class__.__name__} expects a 4-D gating signal `g`. "
                f"Received `g` with shape {tuple(g_shape)}"
            )
        self._check_map_size(x_shape)
        return self._input_channels(x_shape), self._input_channels(g_shape)

    def _check_map_size(self, x_shape):
        """Raises a ValueError unless theta's `sub_sample` window fits in x's height and width.

        A smaller map gives theta an empty output, which fails later with a
        backend shape error. Sizes unknown until run time (None) pass here.
        """
        height, width = ka_ops.shape_to_channels_last(tuple(x_shape), self.data_format)[1:3]
        if any(size is not None and size < self.sub_sample for size in (height, width)):
            raise ValueError(
                f"{self.__class__.__name__} needs `x` at least `sub_sample` x `sub_sample` "
                f"pixels (theta's window). Received: sub_sample={self.sub_sample} and `x` of "
                f"height {height} and width {width}"
            )

    def build(self, input_shape):
        channels, gating_channels = self._split_shapes(input_shape)
        inter = self.inter_channels or max(1, channels // 2)
        # The convolutions run channels_last (inputs transposed in `call`).
        common = {"data_format": "channels_last", "dtype": self.dtype_policy}
        self.theta = keras.layers.Conv2D(
            inter, self.sub_sample, strides=self.sub_sample, use_bias=False, name="theta", **common
        )
        self.theta.build((None, None, None, channels))
        self.phi = keras.layers.Conv2D(inter, 1, name="phi", **common)
        self.phi.build((None, None, None, gating_channels))
        self.psi = keras.layers.Conv2D(1, 1, name="psi", **common)
        self.psi.build((None, None, None, inter))
        self.output_conv = keras.layers.Conv2D(channels, 1, name="output_conv", **common)
        self.output_conv.build((None, None, None, channels))
        self.output_norm = batch_norm(
            "output_norm", (None, None, None, channels), self.dtype_policy
        )
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        # `build` saw the first call's size only; later calls may bring smaller maps.
        self._check_map_size(inputs[0].shape)
        x, g = (ka_ops.to_channels_last(t, self.data_format) for t in inputs)
        theta = self.theta(x)
        size = ops.shape(theta)
        phi = ka_ops.resize_linear(self.phi(g), (size[1], size[2]))
        alpha = ops.sigmoid(self.psi(ops.relu(theta + phi)))
        x_size = ops.shape(x)
        alpha = ka_ops.resize_linear(alpha, (x_size[1], x_size[2]))
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
