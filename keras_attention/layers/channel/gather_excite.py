import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import depthwise_conv
from keras_attention.layers.base import is_int
from keras_attention.layers.channel_mlp import channel_mlp


def _nearest_indices(in_size, out_size):
    """PyTorch's `interpolate(mode="nearest")` source rows: floor(i * in / out)."""
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    index = ops.floor(ops.cast(ops.arange(out_size), "float32") * scale)
    return ops.minimum(ops.cast(index, "int32"), in_size - 1)


def _depthwise_conv3d_stride2(x, kernel):
    """The "valid" depthwise 3-D convolution of stride 2 in every axis of a padded clip.

    `x` is channels_last `(batch, D + 2, H + 2, W + 2, C)` (padded by 1), `kernel`
    `(3, 3, 3, C, 1)`. Output frame j sums kernel tap t over input frame 2j + t:
    for each tap, every second frame from t, convolved as 2-D depthwise maps of
    stride 2 (builtin kernels on every backend and in TFLite), then summed.
    """
    kernel = ops.cast(kernel, x.dtype)
    taps = kernel.shape[0]
    batch, depth = ops.shape(x)[0], ops.shape(x)[1] - (taps - 1)
    outputs = None
    for tap in range(taps):
        # The same window for every tap (so symbolic shapes agree), every second frame.
        taken = x[:, tap : tap + depth][:, ::2]
        frames = ops.shape(taken)[1]
        taken = ops.reshape(taken, (-1, *ops.shape(taken)[2:]))
        y = ops.depthwise_conv(
            taken, kernel[tap], strides=2, padding="valid", data_format="channels_last"
        )
        outputs = y if outputs is None else outputs + y
    return ops.reshape(outputs, (batch, frames, *ops.shape(outputs)[1:]))


@keras.saving.register_keras_serializable(package="keras_attention")
class GatherExcite(ImageAttentionLayer):
    """Gather-Excite: gather context over an extent, excite by nearest upsampling.

    Reference: Hu, Shen, Albanie, Sun and Vedaldi, "Gather-Excite: Exploiting
    Feature Context in Convolutional Neural Networks", NeurIPS 2018
    (https://arxiv.org/abs/1810.12348).

    Gather: with `extent=0` the whole map is averaged (global extent);
    otherwise each output cell gathers a neighbourhood, which shrinks the map
    by `extent` -- parameter-free by average pooling (window `2 * extent - 1`,
    stride `extent`, padding `extent - 1`, padding not counted), or with
    `extra_params=True` by `log2(extent)` depthwise 3x3 convolutions of stride
    2 (padding 1, no bias), each followed by BatchNormalization, with ReLU
    between them. Optionally (`use_mlp`) an SE-style bottleneck
    `Dense(C // reduction, relu) -> Dense(C)` (with biases) acts on every
    gathered cell. Excite: the sigmoid of the result is upsampled to H x W by
    nearest neighbour and rescales the input.

    The paper's variants: GE-θ⁻ is `extra_params=False, use_mlp=False` (no
    weights at all), GE-θ is `extra_params=True, use_mlp=False` and GE-θ⁺ is
    `extra_params=True, use_mlp=True`. The defaults are timm's
    (`GatherExcite`, with which this layer agrees numerically): global extent
    without extra parameters and with the MLP. The parametric global extent
    (a depthwise convolution as large as the feature map) needs a fixed input
    size and is not offered.

    Volumes and clips: the same layer takes 5-D inputs, and the gather then
    runs over depth as over height and width: the global extent averages the
    whole clip, the local extents pool `2 * extent - 1` cubes with stride
    `extent` in all three axes (a clip of D frames gathers `ceil(D / extent)`
    of them), their depthwise convolutions are 3x3x3 of stride 2 in all three
    axes (padding 1), and the gate is upsampled by nearest neighbour in depth
    too. Keras has no strided depthwise 3-D convolution (and the package's
    `DepthwiseConv3D`, which holds the `(3, 3, 3, C, 1)` kernels, takes depth
    stride 1): each strided 3x3x3 step sums, over its three depth taps, 2-D
    depthwise convolutions of stride 2 of every second frame (builtin kernels
    on every backend and in TFLite; only the frames kept are computed).

    Mixed precision: the global gather (`extent=0`) accumulates in float32
    (`keras_attention.ops.mean`); the local gathers (pooling windows, strided
    convolutions), the MLP and the gate run in the compute dtype, with
    BatchNormalization's statistics in float32 (Keras's).

    Args:
        extent: 0 (global) or a power of two >= 2, the gather stride.
            Defaults to 0.
        extra_params: bool, gather with depthwise convolutions instead of
            average pooling (needs `extent` >= 2). Defaults to False.
        use_mlp: bool, apply the bottleneck MLP to the gathered map.
            Defaults to True.
        reduction: int, the MLP's bottleneck ratio; it has
            `max(1, C // reduction)` hidden units. Defaults to 16.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return the gate upsampled to the
            input's size, `(batch, H, W, C)` (channels_last) or
            `(batch, C, H, W)`; `(batch, 1, 1, C)` (or `(batch, C, 1, 1)`)
            for the global extent. Volumes: `(batch, D, H, W, C)` or
            `(batch, C, D, H, W)`, and `(batch, 1, 1, 1, C)` (or
            `(batch, C, 1, 1, 1)`) for the global extent.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = GatherExcite(extent=4, extra_params=True)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(
        self,
        extent=0,
        extra_params=False,
        use_mlp=True,
        reduction=16,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        if (
            not is_int(extent)
            or extent < 0
            or (extent > 0 and (extent < 2 or extent & (extent - 1)))
        ):
            raise ValueError(
                f"`extent` must be 0 (global) or a power of two >= 2. Received: extent={extent!r}"
            )
        for name, value in (("extra_params", extra_params), ("use_mlp", use_mlp)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")  # noqa: TRY004
        if extra_params and extent == 0:
            raise ValueError(
                "`extra_params` needs `extent` >= 2: a parametric global gather needs "
                "a fixed input size. Received: extra_params=True, extent=0"
            )
        check_positive_int("reduction", reduction)
        self.extent = extent
        self.extra_params = extra_params
        self.use_mlp = use_mlp
        self.reduction = reduction

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        map_shape = (None,) * (self.spatial_rank + 1) + (channels,)
        self.gather_convs, self.gather_norms = [], []
        if self.extra_params:
            for i in range(self.extent.bit_length() - 1):  # log2(extent) stride-2 steps
                name = f"gather_conv{i + 1}"
                if self.spatial_rank == 2:
                    conv = keras.layers.DepthwiseConv2D(
                        3,
                        strides=2,
                        padding="valid",
                        use_bias=False,
                        data_format="channels_last",
                        dtype=self.dtype_policy,
                        name=name,
                    )
                    conv.build(map_shape)
                else:
                    # Holds the (3, 3, 3, C, 1) kernel; `_gather` strides depth too.
                    conv = depthwise_conv(3, name, 3, channels, self.dtype_policy, use_bias=False)
                self.gather_convs.append(conv)
                self.gather_norms.append(
                    batch_norm(f"gather_norm{i + 1}", map_shape, self.dtype_policy)
                )
        if self.use_mlp:
            self.reduce, self.expand = channel_mlp(
                channels,
                max(1, channels // self.reduction),
                ("reduce", "expand"),
                self.dtype_policy,
            )
        self.built = True

    def _strided_conv(self, conv, x):
        """A gather step's 3x3 (3x3x3) depthwise convolution of stride 2, padding 1."""
        # PyTorch's symmetric padding 1 (Keras's "same" pads stride 2 asymmetrically).
        x = ops.pad(x, ((0, 0),) + ((1, 1),) * (len(x.shape) - 2) + ((0, 0),))
        if len(x.shape) == 4:
            return conv(x)
        return _depthwise_conv3d_stride2(x, conv.kernel)

    def _gather(self, x, training):
        """channels_last (batch, [D,] H, W, C) -> the gathered (batch, [d,] h, w, C)."""
        positions = tuple(range(1, len(x.shape) - 1))
        if self.extent == 0:
            return ka_ops.mean(x, positions, keepdims=True)
        if self.extra_params:
            for i, (conv, norm) in enumerate(zip(self.gather_convs, self.gather_norms)):
                if i:
                    x = ops.relu(x)
                x = norm(self._strided_conv(conv, x), training=training)
            return x
        # Average pooling whose zero padding is not counted: pool the sum and the count.
        size, pad = 2 * self.extent - 1, self.extent - 1
        padding = ((0, 0),) + ((pad, pad),) * len(positions) + ((0, 0),)
        pooled = ops.average_pool(
            ops.pad(x, padding), size, self.extent, padding="valid", data_format="channels_last"
        )
        ones = ops.pad(ops.ones_like(x[..., :1]), padding)
        return pooled / ops.average_pool(
            ones, size, self.extent, padding="valid", data_format="channels_last"
        )

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        gathered = self._gather(x, training)
        if self.use_mlp:
            gathered = self.expand(self.reduce(gathered))
        # The sigmoid commutes with nearest upsampling: gate the small map.
        gate = ops.sigmoid(gathered)
        if self.extent:
            shape, small = ops.shape(x), ops.shape(gate)
            for axis in range(1, len(x.shape) - 1):
                gate = ops.take(gate, _nearest_indices(small[axis], shape[axis]), axis=axis)
        gate = ka_ops.from_channels_last(gate, self.data_format)
        return self._outputs(inputs * gate, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "extent": self.extent,
                "extra_params": self.extra_params,
                "use_mlp": self.use_mlp,
                "reduction": self.reduction,
            }
        )
        return config
