"""I3D inflation: the 3-D twin of a functional 2-D model, its weights inflated."""

import keras
import numpy as np

from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.depthwise_conv3d import DepthwiseConv3D
from keras_attention.layers.max_pooling3d import MaxPooling3D
from keras_attention.models import conv
from keras_attention.models.grouped_conv import GroupedConv2D
from keras_attention.models.timm.input_range import InputRange

MODES = ("repeat", "centre")
# 2-D convolutions -> their volume form, a Conv3D of the same config (groups included).
_CONVOLUTIONS = {
    keras.layers.Conv2D: keras.layers.Conv3D,
    GroupedConv2D: keras.layers.Conv3D,
    conv.Conv2D: conv.Conv3D,
}

# Layers whose config and weights serve images and volumes alike (an `axis` is remapped).
_UNCHANGED = (
    keras.layers.InputLayer,
    keras.layers.Dense,
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Concatenate,
    keras.layers.Dropout,
    keras.layers.Identity,
    keras.layers.Rescaling,
    keras.layers.Normalization,
    InputRange,  # from_timm's input check: a min and a max over the whole batch
)
_POOLING = {
    keras.layers.MaxPooling2D: MaxPooling3D,
    keras.layers.AveragePooling2D: keras.layers.AveragePooling3D,
}
_GLOBAL_POOLING = {
    keras.layers.GlobalAveragePooling2D: keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling2D: keras.layers.GlobalMaxPooling3D,
}


def _per_layer(name, value, layer):
    """An int setting, or a function of the layer returning one; checked >= 1."""
    result = value(layer) if callable(value) else value
    if isinstance(result, bool) or not isinstance(result, (int, np.integer)) or result < 1:
        raise ValueError(
            f"`{name}` must be a positive int or a function of a layer returning one. "
            f"Received: {name}={value!r}, giving {result!r} for layer {layer.name!r}"
        )
    return int(result)


def _remap_axis(config, data_format):
    """A positive `axis` of a 4-D tensor, as the same axis of the 5-D one (depth at 1 or 2)."""

    def remap(axis):
        if not isinstance(axis, int) or axis < 1:
            return axis  # negative axes count from the end: unchanged
        if data_format == "channels_first" and axis == 1:
            return 1
        return axis + 1

    if "axis" in config:
        axis = config["axis"]
        config["axis"] = (
            [remap(a) for a in axis] if isinstance(axis, (list, tuple)) else remap(axis)
        )
    return config


def _inflate_kernel(kernel, depth, mode):
    """A 2-D kernel (kh, kw, ...) as (depth, kh, kw, ...): repeated / depth, or centred."""
    if mode == "repeat":
        return np.repeat(kernel[None], depth, axis=0) / depth
    inflated = np.zeros((depth, *kernel.shape), kernel.dtype)
    inflated[depth // 2] = kernel
    return inflated


def _inflate_package_weight(weight, shape):
    """A package layer's 2-D weight onto its 3-D form's (the layer chose its own kernel depth).

    Equal shapes copy; a kernel that gained a leading depth axis is centred in
    an odd depth (k x k -> k x k x k) and averaged over an even one (a kernel
    whose stride is its size): on a clip of one repeated frame both give the
    2-D response in every frame.
    """
    if weight.shape == tuple(shape):
        return weight
    if tuple(shape[1:]) != weight.shape:
        raise ValueError(f"cannot inflate a weight of shape {weight.shape} to {tuple(shape)}")
    return _inflate_kernel(weight, shape[0], "centre" if shape[0] % 2 else "repeat")


class _Inflater:
    def __init__(self, time_kernel, time_stride, mode, data_format):
        self.time_kernel = time_kernel
        self.time_stride = time_stride
        self.mode = mode
        self.data_format = data_format
        self.pairs = []  # (2-D layer, 3-D layer, how its weights inflate)

    def __call__(self, layer):
        twin, weights = self._twin(layer)
        self.pairs.append((layer, twin, weights))
        return twin

    def _refuse(self, layer, why):
        raise ValueError(
            f"`inflate` cannot inflate layer {layer.name!r} ({type(layer).__name__}): {why}"
        )

    def _twin(self, layer):
        config = layer.get_config()
        cls = type(layer)
        if isinstance(layer, keras.Model):
            self._refuse(layer, "nested models are not inflated; pass a flat functional model")
        if cls in _CONVOLUTIONS:
            t = _per_layer("time_kernel", self.time_kernel, layer)
            s = _per_layer("time_stride", self.time_stride, layer)
            config.update(
                kernel_size=(t, *config["kernel_size"]),
                strides=(s, *config["strides"]),
                dilation_rate=(1, *config["dilation_rate"]),
            )
            return _CONVOLUTIONS[cls].from_config(config), ("kernel", t)
        if cls is keras.layers.DepthwiseConv2D:
            t = _per_layer("time_kernel", self.time_kernel, layer)
            s = _per_layer("time_stride", self.time_stride, layer)
            if (
                config["padding"] != "same"
                or config["depth_multiplier"] != 1
                or config["data_format"] != "channels_last"
                or s != 1
                or keras.activations.get(config["activation"]) is not keras.activations.linear
            ):
                self._refuse(
                    layer,
                    "DepthwiseConv3D takes 'same' padding, depth multiplier 1, channels_last, "
                    "no activation and depth stride 1 only",
                )
            twin = DepthwiseConv3D(
                (t, *config["kernel_size"]),
                strides=(1, *config["strides"]),
                dilation_rate=(1, *config["dilation_rate"]),
                use_bias=config["use_bias"],
                name=layer.name,
                dtype=layer.dtype_policy,
            )
            return twin, ("kernel", t)
        if cls in _POOLING:
            s = _per_layer("time_stride", self.time_stride, layer)
            config.update(pool_size=(s, *config["pool_size"]), strides=(s, *config["strides"]))
            return _POOLING[cls].from_config(config), None
        if cls in _GLOBAL_POOLING:
            return _GLOBAL_POOLING[cls].from_config(config), None
        if cls is keras.layers.ZeroPadding2D:
            config["padding"] = (self._depth_padding(layer), *config["padding"])
            return keras.layers.ZeroPadding3D.from_config(config), None
        if isinstance(layer, ImageAttentionLayer):
            if 3 not in cls.spatial_ranks:
                self._refuse(layer, f"it has no 3-D form ({cls.no_volume_reason})")
            return cls.from_config(config), ("package", None)
        if cls in _UNCHANGED or (
            isinstance(layer, keras.layers.BatchNormalization)
            and cls.__module__.startswith("keras_attention")
        ):
            return cls.from_config(_remap_axis(config, self.data_format)), ("copy", None)
        self._refuse(
            layer,
            "it has no known 3-D form (known: Conv2D, GroupedConv2D, DepthwiseConv2D, pooling, global "
            "pooling, ZeroPadding2D, this package's 3-D-capable attention layers, and "
            "layers that act per position or per channel such as Dense, "
            "BatchNormalization, activations, Add, Multiply, Concatenate, Dropout)",
        )
        return None  # unreachable

    def _depth_padding(self, layer):
        """Depth padding of an explicit padding layer: what its convolutions' t needs.

        timm's networks pad explicitly before 'valid' convolutions; in depth the
        padding then is (t - 1) // 2 before and t // 2 after (the 'same' output
        depth of a t-deep kernel), t the consumers' `time_kernel`. Padding that
        feeds pooling or several depths stays 0 in depth.
        """
        consumers = [node.operation for node in getattr(layer, "_outbound_nodes", [])]
        depths = {
            _per_layer("time_kernel", self.time_kernel, c)
            for c in consumers
            if type(c) in (*_CONVOLUTIONS, keras.layers.DepthwiseConv2D)
        }
        if len(depths) != 1 or len(consumers) != sum(
            type(c) in (*_CONVOLUTIONS, keras.layers.DepthwiseConv2D) for c in consumers
        ):
            return (0, 0)
        (t,) = depths
        return ((t - 1) // 2, t // 2)

    def set_weights(self):
        for image, volume, how in self.pairs:
            if how is None or not image.weights:
                continue
            if len(image.weights) != len(volume.weights):
                self._refuse(image, "its 3-D form holds other weights than its 2-D form")
            kind, depth = how
            for source, target in zip(image.weights, volume.weights):
                value = np.asarray(keras.ops.convert_to_numpy(source))
                if kind == "kernel" and source.name == "kernel":
                    value = _inflate_kernel(value, depth, self.mode)
                elif kind == "package":
                    try:
                        value = _inflate_package_weight(value, target.shape)
                    except ValueError as error:  # e.g. a 2x3 affine theta against a 3x4 one
                        self._refuse(
                            image,
                            f"its 3-D form holds other weights than its 2-D form ({error}, "
                            f"{source.path!r})",
                        )
                target.assign(value.astype(target.dtype))


def inflate(model, time_kernel=1, time_stride=1, mode="repeat", name=None):
    """The 3-D twin of a functional 2-D model, with its weights inflated as I3D does.

    Reference: Carreira and Zisserman, "Quo Vadis, Action Recognition? A New
    Model and the Kinetics Dataset", CVPR 2017 (https://arxiv.org/abs/1705.07750).

    Every layer of `model` (a functional model of images, e.g. `from_timm(...)`
    or `ResNet50(attention=...)`) is replaced by its volume form, and the
    model is rebuilt on 5-D inputs `(batch, depth, height, width, channels)`
    (channels after the batch for channels_first), the same depth axis
    inserted in every tensor:

    - `Conv2D` (and the package's `GroupedConv2D`) -> `Conv3D`; the package's
      `models.conv.Conv2D` -> its `Conv3D` (grouped convolutions keep their
      `groups`): a k x k kernel becomes t x k x k, t = `time_kernel`;
      `mode="repeat"` repeats it over the t depth taps and divides by t (I3D),
      `mode="centre"` puts it in the middle tap and zeros elsewhere. Depth
      stride `time_stride`, depth dilation 1, the same padding mode ('same'
      pads depth with zeros; 'valid' not preceded by an explicit padding
      shortens the depth by t - 1).
    - `DepthwiseConv2D` -> the package's `DepthwiseConv3D` (same rules; it
      takes 'same' padding, depth multiplier 1 and depth stride 1 only).
    - `MaxPooling2D` / `AveragePooling2D` -> 3-D, pool size and stride in depth
      `time_stride`; `ZeroPadding2D` -> `ZeroPadding3D` with no depth padding;
      global poolings -> their 3-D forms. An explicit `ZeroPadding2D` that
      feeds convolutions pads depth by (t - 1) // 2 and t // 2 (so timm's
      padded 'valid' convolutions keep the depth as Keras's 'same' ones do);
      one that feeds pooling pads no depth.
    - This package's attention layers: rebuilt from their config (same class,
      the rank comes from the input); their weights map by path, a kernel
      that gains a depth axis centred (odd depth) or averaged (even depth).
    - Layers that act per position or per channel (Dense, BatchNormalization,
      activations, Add, Multiply, Concatenate, Dropout, Rescaling, ...) are
      rebuilt unchanged (a positive `axis` follows the inserted depth axis)
      and their weights copied.

    On a clip whose frames are all one image, the twin's logits equal the 2-D
    model's on that image (float32 rounding) with `mode="centre"` for any t,
    and with `mode="repeat"` where no zero padding in depth reaches (t = 1,
    or unpadded depth): the I3D "boring video" property. (With t > 1 and
    depth padding, repeat's first and last frames see zeros, as in I3D.)

    Args:
        model: a functional `keras.Model` of 4-D images.
        time_kernel: int >= 1, or a function of a 2-D layer (Conv2D or
            DepthwiseConv2D) returning one: the depth of its inflated kernel;
            1 keeps the layer 2-D in time. Defaults to 1.
        time_stride: int >= 1, or a function of a layer returning one: the
            depth stride of convolutions and pooling (and the pooling's size
            in depth). Defaults to 1.
        mode: "repeat" (I3D: repeated over depth and divided by t) or
            "centre".
        name: the twin's name; defaults to the model's name + "_3d".

    Returns:
        A functional `keras.Model` of 5-D inputs.

    Raises:
        ValueError: naming the first layer that cannot inflate (no 3-D form,
            or a layer unknown to `inflate`) and why.

    Example:

    >>> image_model = ResNet50(attention="se", input_shape=(64, 64, 3), classes=10)
    >>> video_model = inflate(image_model, time_kernel=3, mode="centre")
    >>> video_model.input.shape
    (None, None, 64, 64, 3)
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph"):
        raise ValueError(f"`model` must be a functional keras.Model. Received: model={model!r}")
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    for argument, value in (("time_kernel", time_kernel), ("time_stride", time_stride)):
        if not callable(value) and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
        ):
            raise ValueError(
                f"`{argument}` must be a positive int or a function of a layer returning one. "
                f"Received: {argument}={value!r}"
            )
    data_format = keras.config.image_data_format()
    inputs = []
    for tensor in model.inputs:
        if len(tensor.shape) != 4:
            raise ValueError(
                "`model` must take 4-D images (batch, height, width, channels). "
                f"Received a model with input shape {tuple(tensor.shape)}"
            )
        shape = list(tensor.shape[1:])
        shape.insert(0 if data_format == "channels_last" else 1, None)
        inputs.append(keras.Input(shape=tuple(shape), dtype=tensor.dtype, name=tensor.name))
    inflater = _Inflater(time_kernel, time_stride, mode, data_format)
    structure = inputs if isinstance(model.input, (list, tuple)) else inputs[0]
    twin = keras.models.clone_model(model, input_tensors=structure, clone_function=inflater)
    inflater.set_weights()
    return keras.Model(structure, twin.output, name=name or f"{model.name}_3d")
