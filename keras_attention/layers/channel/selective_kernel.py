import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import conv as conv_by_rank
from keras_attention.layers.base import is_int


@keras.saving.register_keras_serializable(package="keras_attention")
class SelectiveKernel(ImageAttentionLayer):
    """Selective Kernel convolution: attention over branches of different receptive field.

    Reference: Li, Wang, Hu and Yang, "Selective Kernel Networks", CVPR 2019
    (https://arxiv.org/abs/1903.06586).

    Split: M branches of grouped `kernel_size` convolutions, one per dilation
    (the paper's 5x5 branch is a 3x3 with dilation 2), each without bias and
    followed by BatchNormalization and ReLU. Fuse: the branches are summed,
    globally average-pooled and squeezed by `Dense(d, no bias) + BN + ReLU`
    with `d = max(filters // reduction, min_units)` (or `units`). Select: one
    bias-free `Dense(filters)` per branch gives logits (the paper's eq. 5 and
    timm have no bias; under a softmax across branches a bias would not
    cancel), and a softmax *across the branch axis* (not the channels) weighs
    the branches, which are summed.

    With the defaults (the paper's SKNet-50 unit) at 256 channels the layer has
    62,528 trainable weights: 2 x 18,432 in the branch convolutions, 2 x 512 in
    their BatchNormalizations, 8,192 + 64 in the fuse step and 16,384 in the
    select step (and 1,088 BatchNormalization statistics).

    `split_input=True` is timm's variant (its `SelectiveKernel` default, used by
    `skresnet18`/`skresnet34`): the input channels are split evenly across the
    branches, each branch convolving only its share. With the same weights the
    layer equals `timm.layers.SelectiveKernel` (float32, eval mode) given
    timm's `stride`, `groups`, `split_input` and `rd_channels=units`.

    Volumes and clips: the same layer takes 5-D inputs. The branches are then
    grouped `kernel_size`^3 convolutions (3x3x3, the second dilated by 2 in
    all three axes) run by `keras_attention.ops.grouped_conv`, `strides`
    applies to depth, height and width alike, the fuse step pools over all
    D*H*W positions, and the select step is unchanged.

    Mixed precision: the pooled means accumulate in float32
    (`keras_attention.ops.mean`) and the softmax across branches runs in
    float32; the convolutions and the weighted sum run in the compute dtype.

    Args:
        filters: int or None, the output channels; None keeps the input's.
        kernel_size: int, the size of every branch's kernel. Defaults to 3.
        dilations: sequence of ints, one dilation rate per branch (at least
            two branches). Defaults to `(1, 2)`.
        groups: int, the groups of each branch convolution; it must divide
            each branch's input channels and `filters`. Defaults to 32.
        reduction: int, the ratio r of the fuse layer. Defaults to 16.
        min_units: int, the lower bound L of the fuse layer. Defaults to 32.
        units: int or None, the fuse layer's width d, overriding
            `max(filters // reduction, min_units)`. Defaults to None.
        strides: int, the stride of the branch convolutions. Above 1 they pad
            symmetrically by `((strides - 1) + dilation * (kernel_size - 1)) // 2`
            as PyTorch (and timm) do, and `kernel_size` must be odd.
            Defaults to 1.
        split_input: bool, whether the branches split the input channels
            evenly between them (timm) instead of each convolving all of them
            (the paper). Defaults to False.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return the branch weights, shape
            `(batch, branches, filters)` (for volumes too); they sum to 1 over
            the branch axis.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        `(batch, H', W', filters)` (channels_last) or `(batch, filters, H', W')`,
        with `H' = (H + 2 * ((strides - 1) // 2) - 1) // strides + 1` (PyTorch's
        size for the padding above: H at stride 1, `ceil(H / 2)` at stride 2),
        and W' alike; volumes `(batch, D', H', W', filters)` (or
        `(batch, filters, D', H', W')`), D' as H'.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = SelectiveKernel(groups=32)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(
        self,
        filters=None,
        kernel_size=3,
        dilations=(1, 2),
        groups=32,
        reduction=16,
        min_units=32,
        units=None,
        strides=1,
        split_input=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("filters", filters, allow_none=True)
        check_positive_int("kernel_size", kernel_size)
        if (
            not isinstance(dilations, (list, tuple))
            or len(dilations) < 2
            or any(not is_int(d) or d < 1 for d in dilations)
        ):
            raise ValueError(
                "`dilations` must be a list or tuple of at least two positive "
                f"integers, one per branch. Received: dilations={dilations!r}"
            )
        check_positive_int("groups", groups)
        check_positive_int("reduction", reduction)
        check_positive_int("min_units", min_units)
        check_positive_int("units", units, allow_none=True)
        check_positive_int("strides", strides)
        if strides > 1 and kernel_size % 2 == 0:
            raise ValueError(
                "`kernel_size` must be odd when `strides` > 1 (the branches must "
                f"keep equal sizes). Received: kernel_size={kernel_size}, strides={strides}"
            )
        if not isinstance(split_input, bool):
            raise ValueError(  # noqa: TRY004
                f"`split_input` must be True or False. Received: split_input={split_input!r}"
            )
        if filters is not None and filters % groups:
            raise ValueError(
                f"`groups` must divide `filters`. Received: groups={groups}, filters={filters}"
            )
        self.filters = filters
        self.kernel_size = kernel_size
        self.dilations = tuple(dilations)
        self.groups = groups
        self.reduction = reduction
        self.min_units = min_units
        self.units = units
        self.strides = strides
        self.split_input = split_input

    def _filters(self, channels):
        return self.filters or channels

    def _branch_channels(self, channels):
        """The input channels of each branch: all, or an even share (`split_input`)."""
        branch_count = len(self.dilations)
        if not self.split_input:
            return channels
        if channels % branch_count:
            raise ValueError(
                f"`split_input=True` needs input channels divisible by the {branch_count} "
                f"branches. Received an input with {channels} channels"
            )
        return channels // branch_count

    def _padding(self, rate):
        """PyTorch's symmetric padding of a strided branch (None: "same" at stride 1)."""
        if self.strides == 1:
            return None
        return ((self.strides - 1) + rate * (self.kernel_size - 1)) // 2

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        branch_channels = self._branch_channels(channels)
        if branch_channels % self.groups:
            raise ValueError(
                f"`groups` must divide the input channels of each branch. Received: "
                f"groups={self.groups} for an input with {channels} channels"
                + (f" ({branch_channels} per branch)" if self.split_input else "")
            )
        filters = self._filters(channels)
        # The branches run channels_last (the input is transposed in `call`), so
        # the weights are the same whatever `data_format` is. The Conv2D layers
        # hold the kernels; `_branch_conv` applies them (strides, padding).
        # Conv2D or Conv3D by the input's rank.
        self.branch_convs, self.branch_norms = [], []
        map_shape = (None,) * (self.spatial_rank + 1) + (filters,)
        for i, rate in enumerate(self.dilations):
            conv = conv_by_rank(
                self.spatial_rank,
                f"branch{i}_conv",
                filters,
                self.kernel_size,
                branch_channels,
                self.dtype_policy,
                padding="same",
                dilation_rate=rate,
                groups=self.groups,
                use_bias=False,
            )
            norm = batch_norm(f"branch{i}_bn", map_shape, self.dtype_policy)
            self.branch_convs.append(conv)
            self.branch_norms.append(norm)
        units = self.units or max(filters // self.reduction, self.min_units)
        # No bias: BatchNormalization follows and would cancel it.
        self.fuse_dense = keras.layers.Dense(
            units, use_bias=False, dtype=self.dtype_policy, name="fuse_dense"
        )
        self.fuse_dense.build((None, filters))
        self.fuse_bn = batch_norm("fuse_bn", (None, units), self.dtype_policy)
        # The paper's M fully connected select layers, stored as one Dense of
        # M * filters units (the same matrices side by side); no bias (eq. 5).
        self.select = keras.layers.Dense(
            len(self.dilations) * filters, use_bias=False, dtype=self.dtype_policy, name="select"
        )
        self.select.build((None, units))
        self.built = True

    def _branch_conv(self, conv, x, rate):
        padding = self._padding(rate)
        if padding is None:
            return ka_ops.grouped_conv(x, conv.kernel, self.groups, dilation_rate=rate)
        spatial = len(x.shape) - 2
        x = ops.pad(x, ((0, 0),) + ((padding, padding),) * spatial + ((0, 0),))
        every_stride = (slice(None),) + (slice(None, None, self.strides),) * spatial
        if rate == 1:
            return ka_ops.grouped_conv(
                x, conv.kernel, self.groups, strides=self.strides, padding="valid"
            )
        # TensorFlow has no strided dilated convolution. Where the stride divides
        # the dilation, the taps all fall on every stride-th pixel: sub-sample first.
        if rate % self.strides == 0:
            x = x[every_stride]
            return ka_ops.grouped_conv(
                x, conv.kernel, self.groups, padding="valid", dilation_rate=rate // self.strides
            )
        y = ka_ops.grouped_conv(x, conv.kernel, self.groups, padding="valid", dilation_rate=rate)
        return y[every_stride]

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        branch_count = len(self.dilations)
        if self.split_input:
            branch_inputs = ops.split(x, branch_count, axis=-1)
        else:
            branch_inputs = [x] * branch_count
        branches = [
            ops.relu(norm(self._branch_conv(conv, branch_input, rate), training=training))
            for conv, norm, branch_input, rate in zip(
                self.branch_convs, self.branch_norms, branch_inputs, self.dilations
            )
        ]
        # The mean of the sum is the sum of the means: no summed map is stored.
        pooled = sum(ka_ops.spatial_mean(branch, "channels_last") for branch in branches)
        z = ops.relu(self.fuse_bn(self.fuse_dense(pooled), training=training))
        logits = ops.reshape(self.select(z), (-1, branch_count, self.select.units // branch_count))
        weights = ka_ops.softmax_float32(logits, axis=1)  # across branches
        # (batch, filters) per branch -> (batch, 1, 1, [1,] filters), picked
        # before the axes are added: TFLite slices at most 5-D tensors.
        outputs = sum(
            branch * ka_ops.expand_channels(weights[:, i], "channels_last", len(x.shape))
            for i, branch in enumerate(branches)
        )
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, weights, return_attention)

    def compute_output_shape(self, input_shape):
        batch, *spatial, channels = ka_ops.shape_to_channels_last(input_shape, self.data_format)

        def strided(size):
            # PyTorch's output size of the symmetric padding above (odd kernels).
            if size is None:
                return None
            return (size + 2 * ((self.strides - 1) // 2) - 1) // self.strides + 1

        shape = (batch, *(strided(size) for size in spatial), self._filters(channels))
        return ka_ops.shape_from_channels_last(shape, self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "dilations": self.dilations,
                "groups": self.groups,
                "reduction": self.reduction,
                "min_units": self.min_units,
                "units": self.units,
                "strides": self.strides,
                "split_input": self.split_input,
            }
        )
        return config
