"""The pieces every timm family shares: PyTorch-padded convs, BN, the input and the head."""

import keras

from keras_attention import layers
from keras_attention.models import _common
from keras_attention.models.conv import Conv2D
from keras_attention.models.grouped_conv import GroupedConv2D
from keras_attention.models.timm.features import features_model
from keras_attention.models.timm.input_range import InputRange


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
    """timm's channel rounding: nearest multiple of `divisor`, at least `min_value`."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * value else rounded


def act(x, name, activation="relu"):
    return keras.layers.Activation(activation, name=name)(x)


def conv(x, filters, kernel_size, strides, name, groups=1, dilation=1, use_bias=False):
    """Conv padded symmetrically by dilation * (k - 1) // 2, as PyTorch's."""
    pad = dilation * (kernel_size - 1) // 2
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    layer = GroupedConv2D if groups > 1 else Conv2D
    return layer(
        filters,
        kernel_size,
        strides=strides,
        groups=groups,
        dilation_rate=dilation,
        use_bias=use_bias,
        name=name,
    )(x)


def channel_attention(kind, channels, name):
    """timm's SE ("se"), ECA ("eca") or GC with add fusion ("gc", timm's "gca") on `channels`.

    Widths as timm's `create_attn` makes them: SE rd_ratio 1/16 rounded to 8,
    GC rd_ratio 1/8 unrounded; ECA's kernel size is the paper's, at least 3.
    """
    if kind == "se":
        units = make_divisible(channels / 16, 8, round_limit=0.0)
        return layers.SqueezeExcitation(units=units, name=name)
    if kind == "eca":
        return layers.EfficientChannelAttention(name=name)
    if kind == "gc":
        units = make_divisible(channels / 8, 1, round_limit=0.0)
        return layers.GlobalContext(units=units, fusion="add", epsilon=1e-6, name=name)
    raise ValueError(f"Unknown attention {kind!r}")  # pragma: no cover - layouts are fixed


# timm's submodules of SE, ECA and GC -> our sublayer attributes (see `assign`).
CHANNEL_ATTENTION_SUBLAYERS = {
    layers.SqueezeExcitation: {"fc1": "reduce", "fc2": "expand"},
    layers.EfficientChannelAttention: {"conv": "conv"},
    layers.GlobalContext: {
        "conv_attn": "conv_attn",
        "mlp_add.fc1": "add_fc1",
        "mlp_add.norm": "add_norm",
        "mlp_add.fc2": "add_fc2",
        "mlp_scale.fc1": "mul_fc1",
        "mlp_scale.norm": "mul_norm",
        "mlp_scale.fc2": "mul_fc2",
    },
}


def conv_bn(
    x,
    filters,
    kernel_size,
    strides,
    conv_name,
    bn_name,
    act_name=None,
    groups=1,
    activation="relu",
    dilation=1,
):
    x = conv(x, filters, kernel_size, strides, conv_name, groups, dilation)
    x = _common.batch_norm(x, bn_name)
    return act(x, act_name, activation) if act_name else x


def inputs(input_shape, preprocessing=None, input_range=(0.0, 1.0)):
    """(model input, tensor after the optional range check and mean/std layer).

    With `preprocessing` = (mean, std), an `InputRange` layer named
    "input_range_<low>_to_<high>" (the range in the model's summary) checks
    each batch, then a `Rescaling` layer named "preprocessing" maps
    `input_range` to [0, 1] and applies the mean and std, in one multiply-add.
    `model_inputs(options)` is the builders' form of it.

    The layer is a `Rescaling` rather than a `Normalization`: Normalization
    holds its statistics as eager tensors, which a traced export captures and
    tf2onnx turns into extra model inputs, while Rescaling's Python floats
    become graph constants.
    """
    image = _common.image_input(input_shape)
    if preprocessing is None:
        return image, image
    mean, std = preprocessing
    low, high = input_range
    x = InputRange(low, high, name=f"input_range_{low:g}_to_{high:g}")(image)
    # ((x - low) / (high - low) - mean) / std as x * scale + offset.
    scale = [1.0 / ((high - low) * s) for s in std]
    offset = [-(low / (high - low) + m) / s for m, s in zip(mean, std)]
    if _common.channel_axis() == 1:  # Rescaling broadcasts over the last axis
        scale, offset = [[[v]] for v in scale], [[[v]] for v in offset]
    x = keras.layers.Rescaling(scale, offset, name="preprocessing")(x)
    return image, x


def model_inputs(options, input_shape=None):
    """`inputs` for a build's `BuildOptions` (`input_shape` overrides the options' one)."""
    shape = options.input_shape if input_shape is None else input_shape
    return inputs(shape, options.preprocessing, options.input_range)


def finish(inputs, x, options, features=None):
    """The functional model: `x` through the head the options ask for (`head`), or
    the feature maps of a features_only build.

    `features`: [(tensor, timm module, reduction, undilated reduction)] in
    timm's `feature_info` order; None where the family has no features_only.
    """
    if options.features_only:
        return features_model(inputs, features, options)
    outputs = head(x, options.include_top, options.pooling, options.classes, options.head_name)
    return keras.Model(inputs, outputs, name=options.name)


def head(x, include_top, pooling, classes, head_name):
    """Global average pooling and the float32 classifier `head_name`, or the headless output."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        return keras.layers.Dense(classes, dtype="float32", name=head_name)(x)
    return _common.classifier_top(x, False, pooling, classes)


def refuse_features(options, why):
    """ValueError for features_only or output_stride on a family that cannot do them."""
    if options.features_only or options.output_stride != 32:
        raise ValueError(
            f"{options.name!r} cannot be built with features_only=True or an output_stride "
            f"other than 32: {why} Received: features_only={options.features_only!r}, "
            f"output_stride={options.output_stride!r}"
        )


def check_top(options):
    """ValueError for a bad `pooling`, or bad `classes` of a model with a classifier."""
    if options.features_only:
        return  # no head
    _common.check_pooling(options.pooling)
    if options.include_top:
        _common.check_classes(options.classes)
