import math

import keras
import numpy as np
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_choice
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.channel_mlp import channel_mlp

# FcaNet's two-step "top" selection (Qin et al. 2021; the authors' table): the 32 best
# single frequencies (u, v) of a 7x7 DCT space, best first; "top k" takes the
# first k. u indexes the height, v the width.
TOP_FREQUENCIES_U = (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2,
                     4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1)  # fmt: skip
TOP_FREQUENCIES_V = (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2,
                     6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3)  # fmt: skip
NUM_FREQUENCIES = (1, 2, 4, 8, 16, 32)


def _dct_basis(frequency, size):
    """The orthonormal 1-D DCT-II basis vector of `frequency` on `size` samples."""
    scale = math.sqrt(1.0 / size) if frequency == 0 else math.sqrt(2.0 / size)
    positions = np.arange(size) + 0.5
    return np.cos(np.pi * frequency * positions / size) * scale


def dct_filters(channels, height, width, num_frequencies):
    """FcaNet's fixed (height, width, channels) DCT filters, float32.

    The channels are split into `num_frequencies` equal parts; part i gets the
    2-D basis of the i-th top frequency, scaled from the 7x7 space to the grid
    (frequency u becomes `u * (height // 7)`, as in the authors' code).
    """
    part = channels // num_frequencies
    filters = np.zeros((height, width, channels), "float64")
    for i in range(num_frequencies):
        u = TOP_FREQUENCIES_U[i] * (height // 7)
        v = TOP_FREQUENCIES_V[i] * (width // 7)
        basis = np.outer(_dct_basis(u, height), _dct_basis(v, width))
        filters[:, :, i * part : (i + 1) * part] = basis[:, :, None]
    return filters.astype("float32")


def _adaptive_pool_matrix(in_size, out_size):
    """(out_size, in_size) averages of PyTorch's adaptive pooling bins.

    Bin i covers [floor(i * in / out), ceil((i + 1) * in / out)); `in_size`
    may be a run-time value.
    """
    rows = ops.arange(out_size, dtype="int32")[:, None]
    start = (rows * in_size) // out_size
    end = ((rows + 1) * in_size + out_size - 1) // out_size
    positions = ops.arange(in_size, dtype="int32")[None, :]
    inside = ops.cast((positions >= start) & (positions < end), "float32")
    return inside / ops.cast(end - start, "float32")


@keras.saving.register_keras_serializable(package="keras_attention")
class FrequencyChannelAttention(ImageAttentionLayer):
    """Frequency Channel Attention (FcaNet): multi-spectral DCT pooling, then an SE MLP.

    Reference: Qin, Zhang, Wu and Li, "FcaNet: Frequency Channel Attention
    Networks", ICCV 2021 (https://arxiv.org/abs/2012.11879).

    SE's global average pooling is the lowest frequency of a 2-D DCT; FcaNet
    squeezes with several. The channels are split into `num_frequencies`
    groups, and each group is pooled with the fixed 2-D DCT basis of one of
    the paper's top frequencies (the 7x7 frequency table of the paper's
    two-step selection, scaled to the grid) on a `dct_height` x `dct_width`
    grid; the result goes through `Dense(C // reduction, relu) ->
    Dense(C, sigmoid)` without biases, as in the authors' code, and rescales
    the channels. A map of another size is first average-pooled to the grid
    adaptively (PyTorch's bins), as their code does; here pooling and DCT are
    folded into one weighted sum over the map. The DCT filters are constants
    computed from the arguments, not weights. The authors use a 56, 28, 14 or
    7 grid for the ResNet stages of 64, 128, 256 or 512 base widths. With
    C=256 and r=16 it has 8,192 parameters.

    Mixed precision: the DCT pooling (a sum over positions) runs in float32 and
    is cast back; the MLP and the sigmoid gate run in the compute dtype.

    Args:
        reduction: int, the MLP's bottleneck ratio (`max(1, C // reduction)`
            units). Defaults to 16.
        dct_height: int >= 7, the DCT grid's height. Defaults to 7.
        dct_width: int >= 7, the DCT grid's width. Defaults to 7.
        num_frequencies: one of 1, 2, 4, 8, 16, 32: how many of the top
            frequencies to use (the paper's "top16" by default). It must
            divide C.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map (a 5-D volume raises a ValueError: the
            DCT frequencies are 2-D).
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the channel gate, shape
            `(batch, C)`.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`, C a
        multiple of `num_frequencies`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = FrequencyChannelAttention(dct_height=14, dct_width=14)(x)
    >>> y.shape
    (None, None, None, 256)
    """

    no_volume_reason = (
        "its DCT frequencies are 2-D (the paper's selected (u, v) pairs of a "
        "dct_height x dct_width basis)"
    )

    def __init__(
        self,
        reduction=16,
        dct_height=7,
        dct_width=7,
        num_frequencies=16,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        for name, value in (("dct_height", dct_height), ("dct_width", dct_width)):
            check_positive_int(name, value)
            if value < 7:
                raise ValueError(
                    f"`{name}` must be at least 7 (the frequencies live in a 7x7 DCT "
                    f"space). Received: {name}={value}"
                )
        check_choice("num_frequencies", num_frequencies, NUM_FREQUENCIES)
        self.reduction = reduction
        self.dct_height = dct_height
        self.dct_width = dct_width
        self.num_frequencies = num_frequencies

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        if channels % self.num_frequencies:
            raise ValueError(
                f"The {channels} input channels must be a multiple of "
                f"`num_frequencies`. Received: num_frequencies={self.num_frequencies}"
            )
        self.filters = dct_filters(channels, self.dct_height, self.dct_width, self.num_frequencies)
        self.reduce, self.expand = channel_mlp(
            channels,
            max(1, channels // self.reduction),
            ("reduce", "expand"),
            self.dtype_policy,
            gate="sigmoid",
            use_bias=False,
        )
        self.built = True

    def _spatial_filters(self, height, width):
        """The DCT filters pulled back through adaptive pooling: (C, height, width)."""
        filters = ops.transpose(ops.convert_to_tensor(self.filters), (2, 0, 1))  # (C, h, w)
        pool_h = _adaptive_pool_matrix(height, self.dct_height)  # (h, H)
        pool_w = _adaptive_pool_matrix(width, self.dct_width)  # (w, W)
        return ops.matmul(ops.transpose(pool_h), ops.matmul(filters, pool_w))

    def call(self, inputs, training=None, return_attention=False):
        rows, columns = ka_ops.spatial_axes(self.data_format)
        shape = ops.shape(inputs)
        filters = ops.cast(self._spatial_filters(shape[rows], shape[columns]), "float32")
        if self.data_format == "channels_last":
            filters = ops.transpose(filters, (1, 2, 0))
        # A sum over positions: float32 under mixed precision, then back (it is
        # a fixed weighted pooling, bounded by the input's scale).
        squeezed = ops.sum(ops.cast(inputs, "float32") * filters[None], axis=(rows, columns))
        squeezed = ops.cast(squeezed, inputs.dtype)
        gate = self.expand(self.reduce(squeezed))
        outputs = inputs * ka_ops.expand_channels(gate, self.data_format)
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "dct_height": self.dct_height,
                "dct_width": self.dct_width,
                "num_frequencies": self.num_frequencies,
            }
        )
        return config
