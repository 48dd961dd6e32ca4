import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.mixed.cbam import check_odd_kernel_size


@keras.saving.register_keras_serializable(package="keras_attention")
class EfficientLocalAttention(ImageAttentionLayer):
    """Efficient Local Attention (ELA): strip pooling, a 1-D conv and GroupNorm per axis.

    Reference: Xu and Wan, "ELA: Efficient Local Attention for Deep
    Convolutional Neural Networks", 2024 (https://arxiv.org/abs/2403.01123).

    The map is averaged along W (one C-vector per row) and along H (one per
    column). Both strips go through the same depthwise 1-D convolution of
    size `kernel_size` along their length (no bias), the same GroupNorm
    (`norm_groups` groups, normalised over each strip separately) and a
    sigmoid; the input is multiplied by the row gate and the column gate.
    The defaults are the paper's ELA-B (kernel 7, 16 GroupNorm groups); ELA-T
    is kernel_size=5, norm_groups=32. The paper's ELA-S and ELA-L use a
    grouped (not depthwise) convolution and are not offered. With C=256 (ELA-B): 2,304 parameters
    (1,792 + 512).

    It is mixed attention: each gate value depends on the channel and the
    position (`a_h[c, h] * a_w[c, w]`), as in coordinate attention.

    Volumes and clips: three strips, each averaged over the two other axes
    (D vectors over H and W, H over D and W, W over D and H), through the
    same 1-D convolution and GroupNorm (each strip normalised on its own)
    and a sigmoid: the input is multiplied by the depth, row and column
    gates. No weights are added, so 2-D weights load by path; but a boring
    clip's depth strip is constant, and its gate (sigmoid of GroupNorm's
    beta, plus padding effects at the ends) still scales every frame.

    Mixed precision: the strip means accumulate in float32
    (`keras_attention.ops.mean`) and GroupNormalization's statistics are
    float32 (Keras's); the 1-D convolutions and the sigmoid gates run in the
    compute dtype.

    Args:
        kernel_size: positive odd int, the 1-D convolution's size. Defaults to 7.
        norm_groups: int >= 1 dividing C, GroupNorm's groups. Defaults to 16.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return a dict of the two gates:
            `"height"`, shape `(batch, H, 1, C)`, and `"width"`, shape
            `(batch, 1, W, C)` (channels_last; `(batch, C, H, 1)` and
            `(batch, C, 1, W)` for channels_first). For volumes and clips,
            three: `"depth"` `(batch, D, 1, 1, C)`, `"height"`
            `(batch, 1, H, 1, C)` and `"width"` `(batch, 1, 1, W, C)`
            (channels_last; channels after the batch for channels_first).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = EfficientLocalAttention(kernel_size=7, norm_groups=16)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, kernel_size=7, norm_groups=16, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_odd_kernel_size(kernel_size)
        check_positive_int("norm_groups", norm_groups)
        self.kernel_size = kernel_size
        self.norm_groups = norm_groups

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        if channels % self.norm_groups:
            raise ValueError(
                f"{self.__class__.__name__} needs `norm_groups` to divide the "
                f"{channels} input channels. Received: norm_groups={self.norm_groups}"
            )
        self.conv = keras.layers.DepthwiseConv1D(
            self.kernel_size,
            padding="same",
            use_bias=False,
            data_format="channels_last",
            dtype=self.dtype_policy,
            name="conv",
        )
        self.conv.build((None, None, channels))
        self.norm_gamma = self.add_weight(shape=(channels,), initializer="ones", name="norm_gamma")
        self.norm_beta = self.add_weight(shape=(channels,), initializer="zeros", name="norm_beta")
        self.built = True

    def _strip_gate(self, strip):
        """(batch, length, C) -> the sigmoid gate of the same shape."""
        normed = ka_ops.group_norm(
            self.conv(strip), self.norm_groups, self.norm_gamma, self.norm_beta
        )
        return ops.sigmoid(normed)

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        if len(x.shape) == 5:
            # Strips along depth (mean over H, W), height (over D, W) and width (over D, H).
            gate_d = ops.expand_dims(self._strip_gate(ka_ops.mean(x, (2, 3))), (2, 3))
            gate_h = ops.expand_dims(self._strip_gate(ka_ops.mean(x, (1, 3))), (1, 3))
            gate_w = ops.expand_dims(self._strip_gate(ka_ops.mean(x, (1, 2))), (1, 2))
            gate = gate_d * gate_h * gate_w
            outputs = ka_ops.from_channels_last(x * gate, self.data_format)
            gates = {"depth": gate_d, "height": gate_h, "width": gate_w}
        else:
            rows = ka_ops.spatial_mean(x, "channels_last", axes=2)  # (batch, H, C)
            columns = ka_ops.spatial_mean(x, "channels_last", axes=1)  # (batch, W, C)
            gate_h = self._strip_gate(rows)[:, :, None, :]  # (batch, H, 1, C)
            gate_w = self._strip_gate(columns)[:, None, :, :]  # (batch, 1, W, C)
            # The gates' product first, then one multiply of same-shape maps (as
            # CoordinateAttention: TensorFlow's broadcasting multiply is the slow one).
            outputs = ka_ops.from_channels_last(x * (gate_h * gate_w), self.data_format)
            gates = {"height": gate_h, "width": gate_w}
        attention = {
            name: ka_ops.from_channels_last(gate, self.data_format) for name, gate in gates.items()
        }
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "norm_groups": self.norm_groups})
        return config
