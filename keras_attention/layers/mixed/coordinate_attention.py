import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class CoordinateAttention(ImageAttentionLayer):
    """Coordinate Attention: channel gates along the height and along the width.

    Reference: Hou, Zhou and Feng, "Coordinate Attention for Efficient Mobile
    Network Design", CVPR 2021 (https://arxiv.org/abs/2103.02907).

    The map is average-pooled along the width (one vector a row) and along the
    height (one vector a column); the H + W vectors go through one shared 1x1
    convolution to `max(min_units, C // reduction)` channels, BatchNormalization
    (over all H + W of them) and h-swish, are split back into rows and columns,
    and two 1x1 convolutions to C with sigmoids give `a_h` (per row and channel)
    and `a_w` (per column and channel); the output is `x * a_h * a_w`. The
    convolutions have biases, as in the authors' code (timm's `CoordAttn`
    with `bias=True`). With C=256 and the defaults it has 6,696 parameters
    (6,680 trainable).

    Mixed precision: the row and column means accumulate in float32
    (`keras_attention.ops.mean`); the convolutions and the sigmoid gates run in
    the compute dtype, with BatchNormalization's statistics in float32
    (Keras's).

    Args:
        reduction: int, the bottleneck ratio. Defaults to 32.
        min_units: int, the smallest bottleneck width. Defaults to 8.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return a dict of the two gates,
            `"height"` of shape `(batch, H, 1, C)` and `"width"` of shape
            `(batch, 1, W, C)` (channels_last; `(batch, C, H, 1)` and
            `(batch, C, 1, W)` for channels_first).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = CoordinateAttention(reduction=32)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    def __init__(self, reduction=32, min_units=8, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        check_positive_int("min_units", min_units)
        self.reduction = reduction
        self.min_units = min_units

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        units = max(self.min_units, channels // self.reduction)
        self.conv = keras.layers.Dense(units, dtype=self.dtype_policy, name="conv")
        self.conv.build((None, None, channels))
        self.norm = batch_norm("norm", (None, None, units), self.dtype_policy)
        self.conv_h = keras.layers.Dense(channels, dtype=self.dtype_policy, name="conv_h")
        self.conv_h.build((None, None, units))
        self.conv_w = keras.layers.Dense(channels, dtype=self.dtype_policy, name="conv_w")
        self.conv_w.build((None, None, units))
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        height = ops.shape(x)[1]
        rows = ka_ops.mean(x, 2)  # (batch, H, C)
        columns = ka_ops.mean(x, 1)  # (batch, W, C)
        # One convolution and one normalisation over the H + W strips together.
        strips = ops.concatenate([rows, columns], axis=1)
        strips = ops.hard_silu(self.norm(self.conv(strips), training=training))
        rows, columns = strips[:, :height], strips[:, height:]
        # expand_dims, not [:, None]: TFLite rejects new-axis slices of run-time shapes.
        gate_h = ops.expand_dims(ops.sigmoid(self.conv_h(rows)), 2)
        gate_w = ops.expand_dims(ops.sigmoid(self.conv_w(columns)), 1)
        outputs = ka_ops.from_channels_last(x * gate_w * gate_h, self.data_format)
        attention = {
            "height": ka_ops.from_channels_last(gate_h, self.data_format),
            "width": ka_ops.from_channels_last(gate_w, self.data_format),
        }
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction, "min_units": self.min_units})
        return config
