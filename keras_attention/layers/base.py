"""What every attention layer shares: data_format, input checks, the attention return.

Each mechanism subclasses `ImageAttentionLayer`, adds its hyperparameters (one
attribute per argument, validated in `__init__` with the `check_*` helpers below),
creates its sublayers in `build`, and ends `call` with
`return self._outputs(outputs, attention, return_attention)`.
"""

import math
import numbers

import keras

from keras_attention import ops as ka_ops

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
        raise ValueError(
            f"`{name}` must be a finite {positive_}number. Received: {name}={value!r}"
        )


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
    norm = keras.layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, dtype=dtype, name=name, **kwargs
    )
    norm.build(input_shape)
    return norm


def pointwise_conv(name, filters, in_channels, dtype, **kwargs):
    """A built 1x1 Conv2D that runs channels_last.

    Layers transpose channels_first inputs in `call` (TensorFlow has no NCHW
    convolution on some CPUs), so the weights do not depend on `data_format`.
    """
    conv = keras.layers.Conv2D(
        filters, 1, data_format="channels_last", dtype=dtype, name=name, **kwargs
    )
    conv.build((None, None, None, in_channels))
    return conv


class ImageAttentionLayer(keras.layers.Layer):
    """Base class of the attention layers over 4-D image feature maps.

    Not registered and not public: it holds the conventions every mechanism
    follows (see DESIGN.md) so that each subclass only states its mechanism.
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = ka_ops.standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

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
        """Validates a 4-D input shape and returns its (static) channel count."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ValueError(
                f"{self.__class__.__name__} expects a 4-D input "
                f"(batch, height, width, channels) or (batch, channels, height, "
                f"width) for data_format={self.data_format!r}. Received "
                f"`inputs` with shape {input_shape}"
            )
        channels = input_shape[ka_ops.channel_axis(self.data_format)]
        if channels is None:
            raise ValueError(
                f"{self.__class__.__name__} needs a known channel dimension. "
                f"Received `inputs` with shape {input_shape} and "
                f"data_format={self.data_format!r}"
            )
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
