import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int


def _cpu_only():
    """True when TensorFlow or JAX compute on the CPU (PyTorch's grouped convs are fast)."""
    if keras.backend.backend() not in ("tensorflow", "jax"):
        return False
    return all(device.startswith("cpu") for device in keras.distribution.list_devices())


@keras.saving.register_keras_serializable(package="keras_attention")
class SelectiveKernel(ImageAttentionLayer):
    """Selective Kernel convolution: attention over branches of different receptive field.

    Reference: Li, Wang, Hu and Yang, "Selective Kernel Networks", CVPR 2019
    (https://arxiv.org/abs/1903.06586).

    Split: M branches of grouped `kernel_size` convolutions, one per dilation
    (the paper's 5x5 branch is a 3x3 with dilation 2), each without bias and
    followed by BatchNormalization and ReLU. Fuse: the branches are summed,
    globally average-pooled and squeezed by `Dense(d) + BN + ReLU` with
    `d = max(filters // reduction, min_units)`. Select: one `Dense(filters)` per
    branch gives logits, and a softmax *across the branch axis* (not the
    channels) weighs the branches, which are summed.

    Args:
        filters: int or None, the output channels; None keeps the input's.
        kernel_size: int, the size of every branch's kernel. Defaults to 3.
        dilations: sequence of ints, one dilation rate per branch (at least
            two branches). Defaults to `(1, 2)`.
        groups: int, the groups of each branch convolution; it must divide the
            input channels and `filters`. Defaults to 32.
        reduction: int, the ratio r of the fuse layer. Defaults to 16.
        min_units: int, the lower bound L of the fuse layer. Defaults to 32.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return the branch weights, shape
            `(batch, branches, filters)`; they sum to 1 over the branch axis.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        `(batch, H, W, filters)` (channels_last) or `(batch, filters, H, W)`.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = SelectiveKernel(groups=32)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    def __init__(
        self,
        filters=None,
        kernel_size=3,
        dilations=(1, 2),
        groups=32,
        reduction=16,
        min_units=32,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("filters", filters, allow_none=True)
        check_positive_int("kernel_size", kernel_size)
        if (
            not isinstance(dilations, (list, tuple))
            or len(dilations) < 2
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dilations)
        ):
            raise ValueError(
                "`dilations` must be a list or tuple of at least two positive "
                f"integers, one per branch. Received: dilations={dilations!r}"
            )
        check_positive_int("groups", groups)
        check_positive_int("reduction", reduction)
        check_positive_int("min_units", min_units)
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

    def _filters(self, channels):
        return self.filters or channels

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        if channels % self.groups:
            raise ValueError(
                f"`groups` must divide the input channels. Received: "
                f"groups={self.groups} for an input with {channels} channels"
            )
        filters = self._filters(channels)
        # The branches run channels_last (the input is transposed in `call`), so
        # the weights are the same whatever `data_format` is.
        self.branch_convs, self.branch_norms = [], []
        for i, rate in enumerate(self.dilations):
            conv = keras.layers.Conv2D(
                filters,
                self.kernel_size,
                padding="same",
                dilation_rate=rate,
                groups=self.groups,
                use_bias=False,
                data_format="channels_last",
                dtype=self.dtype_policy,
                name=f"branch{i}_conv",
            )
            conv.build((None, None, None, channels))
            norm = batch_norm(f"branch{i}_bn", (None, None, None, filters), self.dtype_policy)
            self.branch_convs.append(conv)
            self.branch_norms.append(norm)
        units = max(filters // self.reduction, self.min_units)
        self.fuse_dense = keras.layers.Dense(
            units, use_bias=False, dtype=self.dtype_policy, name="fuse_dense"
        )
        self.fuse_dense.build((None, filters))
        self.fuse_bn = batch_norm("fuse_bn", (None, units), self.dtype_policy)
        # The paper's M fully connected select layers, stored as one Dense of
        # M * filters units (the same matrices side by side).
        self.select = keras.layers.Dense(
            len(self.dilations) * filters, dtype=self.dtype_policy, name="select"
        )
        self.select.build((None, units))
        self._per_group = self.groups > 1 and _cpu_only()
        self.built = True

    def _branch_conv(self, conv, x, parts):
        if not self._per_group:
            return conv(x)
        # One dense convolution per group, concatenated: the same result as the
        # grouped convolution, whose gradients TensorFlow and XLA compute ~200x
        # slower on a CPU (docs/benchmarks.md).
        kernels = ops.split(ops.cast(conv.kernel, x.dtype), self.groups, axis=-1)
        return ops.concatenate(
            [
                ops.conv(
                    part,
                    kernel,
                    padding="same",
                    data_format="channels_last",
                    dilation_rate=conv.dilation_rate,
                )
                for part, kernel in zip(parts, kernels)
            ],
            axis=-1,
        )

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        parts = ops.split(x, self.groups, axis=-1) if self._per_group else None
        branches = [
            ops.relu(norm(self._branch_conv(conv, x, parts), training=training))
            for conv, norm in zip(self.branch_convs, self.branch_norms)
        ]
        # The mean of the sum is the sum of the means: no summed map is stored.
        pooled = sum(ka_ops.spatial_mean(branch, "channels_last") for branch in branches)
        z = ops.relu(self.fuse_bn(self.fuse_dense(pooled), training=training))
        branch_count = len(self.dilations)
        logits = ops.reshape(self.select(z), (-1, branch_count, self.select.units // branch_count))
        weights = ka_ops.softmax_float32(logits, axis=1)  # across branches
        outputs = sum(branch * weights[:, i, None, None, :] for i, branch in enumerate(branches))
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, weights, return_attention)

    def compute_output_shape(self, input_shape):
        shape = ka_ops.shape_to_channels_last(input_shape, self.data_format)
        filters = self._filters(shape[-1])
        return ka_ops.shape_from_channels_last((*shape[:3], filters), self.data_format)

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
            }
        )
        return config
