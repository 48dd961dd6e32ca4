import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import conv


def split_attention_units(channels, radix, reduction=4, min_units=32, divisor=8):
    """ResNeSt's attention width: C * radix / reduction, at least `min_units`,
    rounded to the nearest multiple of `divisor` (timm's make-divisible)."""
    value = channels * radix / reduction
    units = max(min_units, int(value + divisor / 2) // divisor * divisor)
    return units + divisor if units < 0.9 * value else units


@keras.saving.register_keras_serializable(package="keras_attention")
class SplitAttention(ImageAttentionLayer):
    """Split attention (ResNeSt): a softmax across radix splits of a grouped convolution.

    Reference: Zhang, Wu, Zhang, Zhu, Lin, Zhang, Sun, He, Mueller, Manmatha,
    Li and Smola, "ResNeSt: Split-Attention Networks", CVPR Workshops 2022
    (https://arxiv.org/abs/2004.08955).

    A `kernel_size` convolution (no bias, symmetric padding) with
    `cardinality * radix` groups makes `radix` splits of `filters` channels
    each, then BatchNorm + ReLU. The splits are summed, averaged over space,
    and passed through a grouped (`cardinality` groups) `1x1 conv(units) +
    BN + ReLU -> 1x1 conv(filters * radix)` (both with biases). A softmax
    across the radix axis (computed in float32), separately in each
    cardinal group, weights the splits, whose weighted sum is the output;
    with `radix=1` the gate is a sigmoid instead (an SE-like gate).

    Volumes and clips: the same layer takes 5-D inputs. The convolution is
    then a grouped `kernel_size`^3 `Conv3D` (symmetric padding, `strides` in
    depth, height and width alike), the context is the mean over all D*H*W
    positions, and the attention MLP's grouped 1x1 convolutions are 1x1x1
    (the same matrices); the softmax across the radix splits is unchanged.

    Args:
        filters: None or int, the output channels (the input's when None).
            Defaults to None.
        kernel_size: int, odd size of the convolution. Defaults to 3.
        strides: int, the convolution's stride. Defaults to 1.
        radix: int, the number of splits R. Defaults to 2.
        cardinality: int, the number of cardinal groups K. Defaults to 1.
        reduction: int, the attention width is `C_in * radix / reduction`,
            at least `min_units`, rounded to a multiple of 8. Defaults to 4.
        min_units: int, the smallest attention width. Defaults to 32.
        units: None or int, the attention width itself (overrides
            `reduction` and `min_units`). Defaults to None.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: whether the BatchNormalization layers use batch statistics.
        return_attention: if True, also return the split weights, shape
            `(batch, radix, filters)` (for volumes too; summing to 1 over the
            radix axis when `radix > 1`).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`. C divisible by
        `cardinality * radix`.

    Output shape:
        `(batch, H / strides, W / strides, filters)` (rounded up), or the
        channels_first equivalent; volumes `(batch, D / strides, H / strides,
        W / strides, filters)` alike.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = SplitAttention(radix=2)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(
        self,
        filters=None,
        kernel_size=3,
        strides=1,
        radix=2,
        cardinality=1,
        reduction=4,
        min_units=32,
        units=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("filters", filters, allow_none=True)
        check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be odd. Received: kernel_size={kernel_size}")
        check_positive_int("strides", strides)
        check_positive_int("radix", radix)
        check_positive_int("cardinality", cardinality)
        check_positive_int("reduction", reduction)
        check_positive_int("min_units", min_units)
        check_positive_int("units", units, allow_none=True)
        if filters is not None and filters % cardinality:
            raise ValueError(
                "`cardinality` must divide `filters`. Received: "
                f"cardinality={cardinality}, filters={filters}"
            )
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.radix = radix
        self.cardinality = cardinality
        self.reduction = reduction
        self.min_units = min_units
        self.units = units

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        groups = self.cardinality * self.radix
        if channels % groups:
            raise ValueError(
                "`cardinality * radix` must divide the input channels. Received: "
                f"cardinality={self.cardinality}, radix={self.radix} for an input "
                f"with {channels} channels"
            )
        filters = self.filters or channels
        if filters % self.cardinality:
            raise ValueError(
                f"`cardinality` must divide the output channels. Received: "
                f"cardinality={self.cardinality}, filters={filters}"
            )
        units = self.units or split_attention_units(
            channels, self.radix, self.reduction, self.min_units
        )
        if units % self.cardinality:
            raise ValueError(
                f"`cardinality` must divide the attention width. Received: "
                f"cardinality={self.cardinality}, units={units}"
            )
        self._filters, self._units = filters, units
        rank = self.spatial_rank
        # Conv2D or Conv3D by the input's rank; `call` applies their kernels.
        self.conv = conv(
            rank,
            "conv",
            filters * self.radix,
            self.kernel_size,
            channels,
            self.dtype_policy,
            strides=self.strides,
            groups=groups,
            use_bias=False,
        )
        pad = self.kernel_size // 2
        self.bn0 = batch_norm(
            "bn0", (None,) * (rank + 1) + (filters * self.radix,), self.dtype_policy
        )
        # The attention MLP: grouped 1x1 (1x1x1) convolutions on the
        # (batch, 1, 1, [1,] C) context.
        self.fc1 = conv(rank, "fc1", units, 1, filters, self.dtype_policy, groups=self.cardinality)
        self.bn1 = batch_norm("bn1", (None,) + (1,) * rank + (units,), self.dtype_policy)
        self.fc2 = conv(
            rank,
            "fc2",
            filters * self.radix,
            1,
            units,
            self.dtype_policy,
            groups=self.cardinality,
        )
        self._pad = ((0, 0),) + ((pad, pad),) * rank + ((0, 0),)
        self.built = True

    def _grouped_1x1(self, conv, x):
        outputs = ka_ops.grouped_conv(x, conv.kernel, self.cardinality, padding="valid")
        return outputs + ops.cast(conv.bias, outputs.dtype)

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        # At stride 1 "same" is the symmetric padding, without a padded copy of x.
        if self.strides > 1:
            x = ops.pad(x, self._pad)
        x = ka_ops.grouped_conv(
            x,
            self.conv.kernel,
            self.cardinality * self.radix,
            strides=self.strides,
            padding="same" if self.strides == 1 else "valid",
        )
        x = ops.relu(self.bn0(x, training=training))
        splits = ops.split(x, self.radix, axis=-1) if self.radix > 1 else [x]
        context = ka_ops.spatial_mean(sum(splits[1:], splits[0]), "channels_last")
        # (batch, C) <-> (batch, 1, 1, [1,] C): one position for the 1x1 convolutions.
        point = (slice(None),) + (None,) * (len(x.shape) - 2) + (slice(None),)
        first = (slice(None),) + (0,) * (len(x.shape) - 2) + (slice(None),)
        # The grouped 1x1 convolutions run through ka_ops.grouped_conv, not the Conv2D
        # layers' call: on a CPU, Keras sends a TensorFlow grouped convolution
        # through a nested XLA function, which tf2onnx (ONNX export) cannot convert.
        hidden = self._grouped_1x1(self.fc1, context[point])
        hidden = ops.relu(self.bn1(hidden, training=training))
        logits = self._grouped_1x1(self.fc2, hidden)[first]  # (batch, filters * radix)
        per_group = self._filters // self.cardinality
        if self.radix > 1:
            # fc2's channels run (cardinal group, radix, channel); the splits' run
            # (radix, cardinal group, channel): softmax over radix, then reorder.
            logits = ops.reshape(logits, (-1, self.cardinality, self.radix, per_group))
            weights = ka_ops.softmax_float32(logits, axis=2)
            weights = ops.reshape(
                ops.transpose(weights, (0, 2, 1, 3)), (-1, self.radix, self._filters)
            )
        else:
            weights = ops.sigmoid(logits)[:, None, :]
        outputs = splits[0] * weights[:, 0][point]
        for r in range(1, self.radix):
            outputs = outputs + splits[r] * weights[:, r][point]
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, weights, return_attention)

    def compute_output_shape(self, input_shape):
        shape = ka_ops.shape_to_channels_last(tuple(input_shape), self.data_format)
        channels = self._input_channels(input_shape)

        def down(size):
            return None if size is None else (size - 1) // self.strides + 1

        out = (shape[0], *(down(size) for size in shape[1:-1]), self.filters or channels)
        return ka_ops.shape_from_channels_last(out, self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "radix": self.radix,
                "cardinality": self.cardinality,
                "reduction": self.reduction,
                "min_units": self.min_units,
                "units": self.units,
            }
        )
        return config
