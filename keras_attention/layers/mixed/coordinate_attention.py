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

    Volumes and clips: three pooled axes. The map is averaged into D strips
    (one vector a frame, over H and W), H strips (over D and W) and W strips
    (over D and H); the D + H + W vectors go through the shared 1x1
    convolution, BatchNormalization and h-swish together, are split, and three
    1x1 convolutions with sigmoids (`conv_d`, `conv_h`, `conv_w`) give the
    gates `a_d`, `a_h`, `a_w`; the output is `x * a_d * a_h * a_w`. The depth
    gate adds `conv_d` (C * units + C weights) after the weights the 2-D form
    has, so 2-D weights load into the shared part by path, but a boring clip
    is still scaled by its depth gate: the 3-D form is not the 2-D one on
    repeated frames.

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
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return a dict of the two gates,
            `"height"` of shape `(batch, H, 1, C)` and `"width"` of shape
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
    >>> y = CoordinateAttention(reduction=32)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

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
        if self.spatial_rank == 3:
            # Last, so the weights the two forms share come first in the same order.
            self.conv_d = keras.layers.Dense(channels, dtype=self.dtype_policy, name="conv_d")
            self.conv_d.build((None, None, units))
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        if len(x.shape) == 5:
            return self._call_volume(x, training, return_attention)
        height = ops.shape(x)[1]
        rows = ka_ops.spatial_mean(x, "channels_last", axes=2)  # (batch, H, C)
        columns = ka_ops.spatial_mean(x, "channels_last", axes=1)  # (batch, W, C)
        # One convolution and one normalisation over the H + W strips together,
        # concatenated after the convolution (the same sums): a concatenation of
        # the pooled strips would make TFLite's int8 quantizer clip the input,
        # as pooling keeps its input's scale (docs/deployment.md).
        strips = ops.concatenate([self.conv(rows), self.conv(columns)], axis=1)
        strips = ops.hard_silu(self.norm(strips, training=training))
        rows, columns = strips[:, :height], strips[:, height:]
        # expand_dims, not [:, None]: TFLite rejects new-axis slices of run-time shapes.
        gate_h = ops.expand_dims(ops.sigmoid(self.conv_h(rows)), 2)
        gate_w = ops.expand_dims(ops.sigmoid(self.conv_w(columns)), 1)
        # The gates' product first, then a multiply of same-shape maps: TensorFlow's
        # broadcasting multiply costs about 1.5x a plain one (docs/benchmarks.md).
        outputs = ka_ops.from_channels_last(x * (gate_w * gate_h), self.data_format)
        attention = {
            "height": ka_ops.from_channels_last(gate_h, self.data_format),
            "width": ka_ops.from_channels_last(gate_w, self.data_format),
        }
        return self._outputs(outputs, attention, return_attention)

    def _call_volume(self, x, training, return_attention):
        """The channels_last (batch, D, H, W, C) form: strips along depth, height and width."""
        depth, height = ops.shape(x)[1], ops.shape(x)[2]
        planes = ka_ops.mean(x, (2, 3))  # (batch, D, C): one vector a frame
        rows = ka_ops.mean(x, (1, 3))  # (batch, H, C)
        columns = ka_ops.mean(x, (1, 2))  # (batch, W, C)
        # One convolution and one normalisation over the D + H + W strips together.
        strips = ops.concatenate([planes, rows, columns], axis=1)
        strips = ops.hard_silu(self.norm(self.conv(strips), training=training))
        planes = strips[:, :depth]
        rows = strips[:, depth : depth + height]
        columns = strips[:, depth + height :]
        gate_d = ops.expand_dims(ops.sigmoid(self.conv_d(planes)), (2, 3))
        gate_h = ops.expand_dims(ops.sigmoid(self.conv_h(rows)), (1, 3))
        gate_w = ops.expand_dims(ops.sigmoid(self.conv_w(columns)), (1, 2))
        outputs = ka_ops.from_channels_last(x * (gate_w * gate_h * gate_d), self.data_format)
        attention = {
            "depth": ka_ops.from_channels_last(gate_d, self.data_format),
            "height": ka_ops.from_channels_last(gate_h, self.data_format),
            "width": ka_ops.from_channels_last(gate_w, self.data_format),
        }
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction, "min_units": self.min_units})
        return config
