"""Small pure functions shared by the layers.

Only `keras.ops` here, so every helper runs on the TensorFlow, JAX and PyTorch
backends. Layers import from this module; it imports nothing from the package.
"""

import math

import keras
from keras import ops

DATA_FORMATS = ("channels_last", "channels_first")


def standardize_data_format(data_format):
    """Resolves `None` to Keras's global image data format and validates it."""
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be one of {DATA_FORMATS} or None. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def channel_axis(data_format):
    """The channel axis of a 4-D image tensor: -1 or 1."""
    return -1 if data_format == "channels_last" else 1


def spatial_axes(data_format):
    """The (height, width) axes of a 4-D image tensor."""
    return (1, 2) if data_format == "channels_last" else (2, 3)


def to_channels_last(x, data_format):
    """NCHW -> NHWC when `data_format` is channels_first; otherwise unchanged."""
    if data_format == "channels_first":
        return ops.transpose(x, (0, 2, 3, 1))
    return x


def from_channels_last(x, data_format):
    """NHWC -> NCHW when `data_format` is channels_first; otherwise unchanged."""
    if data_format == "channels_first":
        return ops.transpose(x, (0, 3, 1, 2))
    return x


def shape_to_channels_last(shape, data_format):
    """A static 4-D shape tuple in NHWC order."""
    if data_format == "channels_first":
        return (shape[0], shape[2], shape[3], shape[1])
    return tuple(shape)


def shape_from_channels_last(shape, data_format):
    """A static NHWC shape tuple in `data_format` order."""
    if data_format == "channels_first":
        return (shape[0], shape[3], shape[1], shape[2])
    return tuple(shape)


def expand_channels(v, data_format):
    """(batch, C) -> (batch, 1, 1, C) or (batch, C, 1, 1), to scale a feature map."""
    if data_format == "channels_last":
        return v[:, None, None, :]
    return v[:, :, None, None]


def softmax_float32(x, axis=-1):
    """Softmax computed in float32 and cast back to the input dtype.

    exp() of energies above ~11 overflows float16, and bfloat16 sums over
    thousands of positions lose most of their digits; so the normalisation
    always runs in float32.
    """
    dtype = x.dtype
    return ops.cast(ops.softmax(ops.cast(x, "float32"), axis=axis), dtype)


def eca_kernel_size(channels, gamma=2, b=1):
    """ECA-Net's adaptive 1-D kernel size (Wang et al., CVPR 2020, eq. 12).

    `t = int(|(log2(C) + b) / gamma|)`, then the nearest odd number at or above:
    C=64 -> 3, C=256 -> 5, C=2048 -> 7 with the paper's gamma=2, b=1.
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1
