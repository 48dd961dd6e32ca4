"""What the model builders share: the `attention` argument, input checks, the top."""

import functools

import keras

from keras_attention import registry
from keras_attention.layers.base import BATCH_NORM_EPSILON
from keras_attention.layers.base import BATCH_NORM_MOMENTUM
from keras_attention.layers.batch_normalization import BatchNormalization
from keras_attention.models.conv import Conv2D

POOLINGS = (None, "avg", "max")


def batch_norm(x, name, **kwargs):
    """BatchNormalization over the channel axis, with the layers' momentum and epsilon."""
    return BatchNormalization(
        axis=channel_axis(),
        momentum=BATCH_NORM_MOMENTUM,
        epsilon=BATCH_NORM_EPSILON,
        name=name,
        **kwargs,
    )(x)


def conv_bn_act(x, filters, names, activation="relu", strides=1, dilation_rate=1, use_bias=False):
    """A 3x3 "same" convolution, `batch_norm` and an activation: the heads' unit.

    Args:
        names: the (convolution, BatchNormalization, activation) layer names;
            each builder keeps its own, as they are its saved-file format.
        activation: "relu", or "leaky_relu" (slope 0.01, InPlaceABN's default).
    """
    conv_name, bn_name, act_name = names
    x = Conv2D(  # a channels_first bias is added along the channels (models.conv)
        filters,
        3,
        strides=strides,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=use_bias,
        name=conv_name,
    )(x)
    x = batch_norm(x, bn_name)
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.01, name=act_name)(x)
    return keras.layers.Activation("relu", name=act_name)(x)


def channel_axis():
    """The channel axis of the models' tensors: they follow the global data format."""
    return -1 if keras.config.image_data_format() == "channels_last" else 1


class Attention:
    """A model's `attention` argument, resolved: call it for one block's layer.

    `attention` is None or "none" (no attention), a registry short name such as
    "se", a layer class, or a factory: a callable taking no argument that
    returns a new layer each time. `spec(name)` returns a new layer named
    `name` (a factory names its layers itself), or None for no attention;
    `spec.tag` names the mechanism in model names ("se", "cbam", ...).
    """

    def __init__(self, attention):
        self.tag = None
        self._made = set()  # ids of a factory's layers: each block needs its own
        if attention is None or (isinstance(attention, str) and attention.lower() == "none"):
            self._make = None
        elif isinstance(attention, str):
            cls = registry.get_class(attention)  # ValueError listing the names
            self._make, self.tag = (lambda name: cls(name=name)), attention.lower()
        elif isinstance(attention, type) and issubclass(attention, keras.layers.Layer):
            self._make, self.tag = (lambda name: attention(name=name)), _tag_of(attention)
        elif callable(attention) and not isinstance(attention, type):
            self._make = lambda name: self._from_factory(attention)
        else:
            raise ValueError(
                "`attention` must be None, a short name from "
                f"keras_attention.available() ({', '.join(registry.available())}), "
                "a layer class, or a callable returning a new layer. Received: "
                f"attention={attention!r}"
            )

    def __call__(self, name):
        return None if self._make is None else self._make(name)

    def _from_factory(self, factory):
        layer = factory()
        if not isinstance(layer, keras.layers.Layer) or id(layer) in self._made:
            raise ValueError(
                "An `attention` factory must return a new Keras layer on each "
                f"call. Received: {factory!r} returned {layer!r}"
            )
        self._made.add(id(layer))
        self.tag = self.tag or _tag_of(type(layer))
        return layer


def _tag_of(cls):
    """The registry short name of `cls`, else its lower-cased class name."""
    for name in registry.available():
        if registry.get_class(name) is cls:
            return name
    return cls.__name__.lower()


def model_name(base, tag):
    """E.g. "resnet50" -> "se_resnet50" with tag "se"."""
    return f"{tag}_{base}" if tag else base


@functools.cache
def channels_first_runs():
    """Whether the backend can run an NCHW convolution here, by trying one, once.

    TensorFlow has NCHW convolution and pooling kernels on GPUs and, on a CPU,
    only through oneDNN, which it turns on by default on some CPUs only (not
    on AVX2-only ones) and which TF_ENABLE_ONEDNN_OPTS=0 turns off. JAX and
    PyTorch run NCHW everywhere. A 1x1 probe answers for the machine at hand,
    which CPU flags cannot.
    """
    images = keras.ops.zeros((1, 1, 2, 2))
    kernel = keras.ops.zeros((1, 1, 1, 1))
    try:
        keras.ops.convert_to_numpy(keras.ops.conv(images, kernel, data_format="channels_first"))
    except Exception:  # noqa: BLE001 -- TensorFlow's UnimplementedError, or any refusal
        return False
    return True


def check_data_format_runs():
    """Raises a ValueError at build time where a channels_first model could not run.

    Without it the model builds and then fails inside `fit` or `predict` with
    TensorFlow's UnimplementedError. (The layers themselves run channels_last
    inside, so they work in either format everywhere.)
    """
    if keras.config.image_data_format() != "channels_first" or channels_first_runs():
        return
    raise ValueError(
        "The global image_data_format is 'channels_first', but the "
        f"{keras.backend.backend()} backend cannot run NCHW convolutions on this "
        "machine: TensorFlow has them on a CPU only through oneDNN, which is off "
        "here (it is on by default on some CPUs only; TF_ENABLE_ONEDNN_OPTS=0 turns "
        "it off). Build the model channels_last with "
        "keras.config.set_image_data_format('channels_last') (the same weights give "
        "the same results; transpose NCHW images with keras.ops.transpose(x, (0, 2, 3, 1))), "
        "or set TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported, or use a GPU "
        "or the JAX or PyTorch backend."
    )


def image_input(input_shape):
    """A `keras.Input` for images of `input_shape` (H and W may be None).

    Every builder starts here, so this is also where a channels_first model
    that this machine could not run is refused.
    """
    check_data_format_runs()
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
    channels = shape[-1 if channel_axis() == -1 else 0] if len(shape) == 3 else None
    if not (isinstance(channels, int) and channels > 0):
        raise ValueError(
            "`input_shape` must be a tuple of 3 dimensions in the global "
            "image_data_format, with a known channel count; height and width "
            f"may be None. Received: input_shape={input_shape!r}"
        )
    return keras.Input(shape=shape, name="image")


def check_pooling(pooling):
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")


def check_classes(classes):
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"`classes` must be a positive integer. Received: classes={classes!r}")


def classifier_top(x, include_top, pooling, classes):
    """Global average pooling + float32 logits, or the `pooling` of a headless model.

    The classifier layer computes in float32 so that a mixed-precision model
    still returns float32 logits (no softmax: pair it with `from_logits=True`).
    """
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return keras.layers.Dense(classes, dtype="float32", name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x
