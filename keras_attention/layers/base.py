"""What every attention layer shares: data_format, ranks, input checks, the attention return.

Each mechanism subclasses `ImageAttentionLayer`, adds its hyperparameters (one
attribute per argument, validated in `__init__` with the `check_*` helpers below),
creates its sublayers in `build` (convolutions of the input's rank through
`conv`, `pointwise_conv` and `depthwise_conv` below), and
ends `call` with `return self._outputs(outputs, attention, return_attention)`.
A mechanism with a volume form lists 3 in `spatial_ranks`; one without states
why in `no_volume_reason`.
"""

import math
import numbers

import keras

from keras_attention import ops as ka_ops
from keras_attention.layers.batch_normalization import BatchNormalization
from keras_attention.layers.depthwise_conv3d import DepthwiseConv3D

# PyTorch's BatchNorm momentum 0.1, used by the papers' code, is Keras's 0.9.
# Keras's default 0.99 still holds 15% of the initial statistics (mean 0, var
# 1) after 190 steps: short runs then evaluate with the wrong normalisation.
BATCH_NORM_MOMENTUM = 0.9
# PyTorch's BatchNorm epsilon, used by the papers' code and timm. Keras's 1e-3
# makes a layer differ from the reference by up to 1e-3 relative with the same
# weights, and pretrained checkpoints come from there.
BATCH_NORM_EPSILON = 1e-5


def is_int(value):
    """Whether `value` is an integer of any type (Python, NumPy, ...) other than a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name, value, allow_none=False):
    """Raises a ValueError naming `name` unless `value` is an integer >= 1.

    Any integer type passes (`np.int64(8)` as well as `8`); `ImageAttentionLayer`
    stores it as a Python int, so configs stay JSON.
    """
    if allow_none and value is None:
        return
    if not is_int(value) or value < 1:
        none = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be a positive integer{none}. Received: {name}={value!r}")


def check_non_negative_int(name, value):
    """Raises a ValueError naming `name` unless `value` is an integer >= 0 (any integer type)."""
    if not is_int(value) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")


def check_number(name, value, positive=False):
    """Raises a ValueError naming `name` unless `value` is a finite real number (> 0 if `positive`).

    Any real type passes (`np.float32(0.1)` as well as `0.1` or `1`); bools do
    not. NaN and infinity are refused: `nan <= 0` is False, so a plain range
    check lets NaN through, and it would make every output NaN.
    """
    positive_ = "positive " if positive else ""
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or (positive and value <= 0)
    ):
        raise ValueError(f"`{name}` must be a finite {positive_}number. Received: {name}={value!r}")


def check_divides_channels(layer_name, name, value, channels, parts=1):
    """Raises a ValueError naming `name` unless `value * parts` divides `channels`."""
    if channels % (value * parts):
        times = f" * {parts}" if parts > 1 else ""
        raise ValueError(
            f"{layer_name} needs `{name}`{times} to divide the {channels} input "
            f"channels. Received: {name}={value}"
        )


def check_bool(name, value):
    """Raises a ValueError naming `name` unless `value` is True or False."""
    if not isinstance(value, bool):
        # ValueError, not TypeError: every bad argument raises one (DESIGN.md).
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")  # noqa: TRY004


def check_size(name, value, allow_none=False):
    """A positive integer or a pair of them -> (height, width); ValueError naming `name` otherwise."""
    if allow_none and value is None:
        return None
    pair = (value, value) if is_int(value) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or any(not is_int(v) or v < 1 for v in pair)
    ):
        none = " or None" if allow_none else ""
        raise ValueError(
            f"`{name}` must be a positive integer or a (height, width) pair of them{none}. "
            f"Received: {name}={value!r}"
        )
    return tuple(int(v) for v in pair)


def _python_ints(value):
    """`value` with NumPy (or other non-Python) integers, also inside tuples and lists, as ints."""
    if is_int(value) and type(value) is not int:
        return int(value)
    if isinstance(value, (tuple, list)) and any(is_int(v) and type(v) is not int for v in value):
        return type(value)(_python_ints(v) for v in value)
    return value


def check_choice(name, value, choices):
    """Raises a ValueError naming `name` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}. Received: {name}={value!r}")


def batch_norm(name, input_shape, dtype, **kwargs):
    """A built BatchNormalization sublayer (last axis) with PyTorch's momentum and epsilon."""
    norm = BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, dtype=dtype, name=name, **kwargs
    )
    norm.build(input_shape)
    return norm


def conv(rank, name, filters, kernel_size, in_channels, dtype, **kwargs):
    """A built channels_last `Conv2D` (rank 2) or `Conv3D` (rank 3).

    Layers transpose channels_first inputs in `call` (TensorFlow has no NCHW
    convolution on some CPUs), so the weights do not depend on `data_format`.
    An int `kernel_size` is cubic in 3-D; a 2-D layer's kernel is its 3-D
    form's with the depth axis dropped, so 2-D weights inflate by path.
    """
    cls = {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[rank]
    layer = cls(filters, kernel_size, data_format="channels_last", dtype=dtype, name=name, **kwargs)
    layer.build((None,) * (rank + 1) + (in_channels,))
    return layer


def pointwise_conv(name, filters, in_channels, dtype, rank=2, **kwargs):
    """A built 1x1 (or 1x1x1) convolution that runs channels_last (see `conv`)."""
    return conv(rank, name, filters, 1, in_channels, dtype, **kwargs)


def depthwise_conv(rank, name, kernel_size, channels, dtype, **kwargs):
    """A built channels_last depthwise convolution: Keras's `DepthwiseConv2D` or `DepthwiseConv3D`."""
    if rank == 2:
        layer = keras.layers.DepthwiseConv2D(
            kernel_size,
            padding="same",
            data_format="channels_last",
            dtype=dtype,
            name=name,
            **kwargs,
        )
    else:
        layer = DepthwiseConv3D(kernel_size, dtype=dtype, name=name, **kwargs)
    layer.build((None,) * (rank + 1) + (channels,))
    return layer


class ImageAttentionLayer(keras.layers.Layer):
    """Base class of the attention layers over images (4-D) and volumes or clips (5-D).

    Not registered and not public: it holds the conventions every mechanism
    follows (see DESIGN.md) so that each subclass only states its mechanism.
    The rank comes from the input in `build` (`self.spatial_rank`: 2 or 3), as
    in Keras's `MultiHeadAttention`: one class, one registered name, for both.
    """

    # The spatial ranks the mechanism has a form for: 2 (images), 3 (volumes, clips).
    spatial_ranks = (2,)
    # Why a mechanism without a 3-D form has none; its ValueError on 5-D input says so.
    no_volume_reason = "its volume form is not written yet"

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = ka_ops.standardize_data_format(data_format)
        # The rank is checked in `_input_channels`, with the mechanism's own message.
        self.input_spec = keras.layers.InputSpec(min_ndim=4)

    def __setattr__(self, name, value):
        # Hyperparameters given as NumPy integers are kept as Python ints: they
        # then serialise to JSON and act like ints in every backend's ops.
        super().__setattr__(name, _python_ints(value))

    def __call__(self, inputs, *args, **kwargs):
        self._check_input_dtype(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def _check_input_dtype(self, inputs):
        """Raises a ValueError naming the layer and dtype unless `inputs` are floating point.

        Attention weights, softmaxes and gates are real-valued: an integer or bool
        feature map is a mistake upstream (e.g. uint8 images fed straight in), so
        it is refused in every layer alike rather than cast one way in some
        layers and failing deep inside a convolution in others.
        """
        dtype = getattr(inputs, "dtype", None)
        if dtype is None:  # nested structures, Python lists: Keras converts those
            return
        dtype = keras.backend.standardize_dtype(dtype)
        if not dtype.startswith(("float", "bfloat")):
            raise ValueError(
                f"{self.__class__.__name__} (layer {self.name!r}) expects floating-point "
                f"inputs. Received `inputs` of dtype {dtype}. Cast them first, e.g. "
                f"`keras.ops.cast(x, 'float32')` or `keras.layers.Rescaling(1 / 255)` for "
                f"uint8 images."
            )

    def _input_channels(self, input_shape):
        """Validates a 4-D or 5-D input shape, sets `spatial_rank` and returns the channel count."""
        input_shape = tuple(input_shape)
        name = self.__class__.__name__
        if len(input_shape) == 5 and 3 not in self.spatial_ranks:
            raise ValueError(
                f"{name} has no 3-D form: {self.no_volume_reason}. It takes 4-D images "
                f"(batch, height, width, channels). Received 5-D `inputs` with shape "
                f"{input_shape}"
            )
        if len(input_shape) not in (4, 5):
            volumes = (
                " or 5-D volumes (batch, depth, height, width, channels)"
                if 3 in self.spatial_ranks
                else ""
            )
            raise ValueError(
                f"{name} expects 4-D images (batch, height, width, channels){volumes}, "
                f"channels after the batch for data_format='channels_first'. Received "
                f"`inputs` with shape {input_shape} ({len(input_shape)}-D)"
            )
        channels = input_shape[ka_ops.channel_axis(self.data_format)]
        if channels is None:
            raise ValueError(
                f"{name} needs a known channel dimension. "
                f"Received `inputs` with shape {input_shape} and "
                f"data_format={self.data_format!r}"
            )
        self.spatial_rank = len(input_shape) - 2
        return int(channels)

    def _outputs(self, outputs, attention, return_attention):
        return (outputs, attention) if return_attention else outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, training=None, return_attention=False):
        if return_attention:
            # `compute_output_shape` knows only the outputs; trace `call` itself
            # to get the (outputs, attention) pair on symbolic inputs.
            return keras.Operation.compute_output_spec(
                self, inputs, training=training, return_attention=True
            )
        return super().compute_output_spec(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": self.data_format})
        return config
