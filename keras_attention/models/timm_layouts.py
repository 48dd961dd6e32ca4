"""timm's ResNet-family layouts as functional Keras models.

`build(layout, ...)` assembles a network from a `Layout`: the stem (7x7,
deep, tiered, Caffe's), the shortcut (strided 1x1 conv or average-pool-down),
the block (basic, bottleneck, ResNeXt's grouped bottleneck, ResNeSt's
split-attention bottleneck, SK-ResNet's selective-kernel basic block, the SE
authors' Caffe bottleneck, timm's "byob" bottleneck) and the attention layer of each block. Layers are named after
timm's module paths with "." replaced by "_" (e.g. `layer1_0_conv1`), which is
what lets `timm_convert` map each checkpoint tensor to one Keras variable.
"""

import dataclasses

import keras

from keras_attention import layers
from keras_attention.models import _common
from keras_attention.models.grouped_conv import GroupedConv2D


@dataclasses.dataclass(frozen=True)
class Layout:
    """One timm architecture: what the builder needs to reproduce it exactly."""

    blocks: tuple  # blocks per stage
    block: str = "bottleneck"  # basic | bottleneck | resnest | sk_basic | legacy | byob
    stem: str = ""  # "" (7x7) | deep | deep_tiered | legacy | tiered (byob, no pool)
    stem_width: int = 64
    avg_down: bool = False
    cardinality: int = 1
    base_width: int = 64
    attention: str | None = None  # se | eca | gc | legacy_se
    radix: int = 1  # resnest


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
    """timm's channel rounding: nearest multiple of `divisor`, at least `min_value`."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * value else rounded


def _act(x, name):
    return keras.layers.Activation("relu", name=name)(x)


def _conv(x, filters, kernel_size, strides, name, groups=1):
    """Conv without bias, padded symmetrically by k // 2 as in PyTorch."""
    if kernel_size > 1:
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
    conv = GroupedConv2D if groups > 1 else keras.layers.Conv2D
    return conv(filters, kernel_size, strides=strides, groups=groups, use_bias=False, name=name)(x)


def _conv_bn(x, filters, kernel_size, strides, conv_name, bn_name, act_name=None, groups=1):
    x = _conv(x, filters, kernel_size, strides, conv_name, groups)
    x = _common.batch_norm(x, bn_name)
    return _act(x, act_name) if act_name else x


def _max_pool(x, name, ceil_mode=False):
    # Zero padding equals PyTorch's -inf padding here: the inputs are ReLU outputs.
    # Caffe's ceil mode (no padding) equals one zero row/column after the end.
    padding = ((0, 1), (0, 1)) if ceil_mode else 1
    x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name=name)(x)


def _stem(x, layout):
    if layout.stem == "":
        x = _conv_bn(x, 64, 7, 2, "conv1", "bn1", "act1")
        return _max_pool(x, "maxpool")
    if layout.stem == "legacy":
        x = _conv_bn(x, 64, 7, 2, "layer0_conv1", "layer0_bn1", "layer0_relu1")
        return _max_pool(x, "pool0", ceil_mode=True)
    if layout.stem == "tiered":  # byob: three ConvNormAct, the last one strided, no pool
        for i, (filters, strides) in enumerate(((24, 2), (32, 1), (64, 2))):
            n = f"stem_conv{i + 1}"
            x = _conv_bn(x, filters, 3, strides, f"{n}_conv", f"{n}_bn", f"{n}_act")
        return x
    width = layout.stem_width
    first = 3 * (width // 4) if layout.stem == "deep_tiered" else width
    x = _conv_bn(x, first, 3, 2, "conv1_0", "conv1_1", "conv1_2")
    x = _conv_bn(x, width, 3, 1, "conv1_3", "conv1_4", "conv1_5")
    x = _conv_bn(x, 64, 3, 1, "conv1_6", "bn1", "act1")
    return _max_pool(x, "maxpool")


def _attention(kind, channels, name):
    if kind == "se":
        units = make_divisible(channels / 16, 8, round_limit=0.0)
        return layers.SqueezeExcitation(units=units, name=name)
    if kind == "legacy_se":
        return layers.SqueezeExcitation(units=channels // 16, name=name)
    if kind == "eca":
        # timm's kernel size: the paper's, at least 3.
        return layers.EfficientChannelAttention(name=name)
    if kind == "gc":
        units = make_divisible(channels / 8, 1, round_limit=0.0)
        return layers.GlobalContext(units=units, fusion="add", epsilon=1e-6, name=name)
    raise ValueError(f"Unknown attention {kind!r}")  # pragma: no cover - layouts are fixed


def _selective_kernel(filters, strides, name):
    """timm's SelectiveKernel of skresnet18/34: a 3x3 branch and a 3x3 dilated by 2
    (its 5x5 under keep_3x3), the input split between them, no groups, and an
    attention width of make_divisible(filters / 8, 16) (rd_ratio=1/8, rd_divisor=16)."""
    return layers.SelectiveKernel(
        filters=filters,
        dilations=(1, 2),
        groups=1,
        units=make_divisible(filters / 8, 16),
        strides=strides,
        split_input=True,
        name=name,
    )


def _shortcut(x, out_channels, strides, name, avg_down):
    """The projection shortcut: 1x1 conv (strided) + BN, or average-pool-down + 1x1 conv + BN."""
    if not avg_down:
        return _conv_bn(x, out_channels, 1, strides, f"{name}_0", f"{name}_1")
    if strides > 1:
        # PyTorch's AvgPool2d(2, ceil_mode=True, count_include_pad=False): "same" pads
        # only an odd edge and leaves the padding out of the mean, the same thing.
        x = keras.layers.AveragePooling2D(2, strides, padding="same", name=f"{name}_0")(x)
    return _conv_bn(x, out_channels, 1, 1, f"{name}_1", f"{name}_2")


def _block(x, layout, planes, strides, name):
    in_channels = x.shape[_common.channel_axis()]
    expansion = 1 if layout.block in ("basic", "sk_basic") else 4
    out_channels = planes * expansion
    n = name
    if layout.block == "basic":
        y = _conv_bn(x, planes, 3, strides, f"{n}_conv1", f"{n}_bn1", f"{n}_act1")
        y = _conv_bn(y, planes, 3, 1, f"{n}_conv2", f"{n}_bn2")
        attention_name = f"{n}_se"
    elif layout.block == "sk_basic":  # SK-ResNet: the first 3x3 is a SelectiveKernel
        y = _selective_kernel(planes, strides, f"{n}_conv1")(x)
        y = _conv_bn(y, planes, 3, 1, f"{n}_conv2_conv", f"{n}_conv2_bn")
        attention_name = None
    elif layout.block == "legacy":  # the stride on the first 1x1 (Caffe)
        y = _conv_bn(x, planes, 1, strides, f"{n}_conv1", f"{n}_bn1", f"{n}_relu1")
        y = _conv_bn(y, planes, 3, 1, f"{n}_conv2", f"{n}_bn2", f"{n}_relu2")
        y = _conv_bn(y, out_channels, 1, 1, f"{n}_conv3", f"{n}_bn3")
        attention_name = f"{n}_se_module"
    elif layout.block == "byob":  # timm's ByobNet bottleneck: attention on the 3x3's output
        mid = out_channels // 4
        y = _conv_bn(x, mid, 1, 1, f"{n}_conv1_1x1_conv", f"{n}_conv1_1x1_bn", f"{n}_conv1_1x1_act")
        y = _conv_bn(
            y, mid, 3, strides, f"{n}_conv2_kxk_conv", f"{n}_conv2_kxk_bn", f"{n}_conv2_kxk_act"
        )
        y = _attention(layout.attention, mid, f"{n}_attn")(y)
        y = _conv_bn(y, out_channels, 1, 1, f"{n}_conv3_1x1_conv", f"{n}_conv3_1x1_bn")
        attention_name = None
    elif layout.block == "resnest":
        width = int(planes * layout.base_width / 64) * layout.cardinality
        y = _conv_bn(x, width, 1, 1, f"{n}_conv1", f"{n}_bn1", f"{n}_act1")
        y = layers.SplitAttention(
            filters=width, radix=layout.radix, cardinality=layout.cardinality, name=f"{n}_conv2"
        )(y)
        if strides > 1:  # "avd": the stride moves to a 3x3 average pool (zeros counted)
            y = keras.layers.ZeroPadding2D(1, name=f"{n}_avd_last_pad")(y)
            y = keras.layers.AveragePooling2D(3, strides, name=f"{n}_avd_last")(y)
        y = _conv_bn(y, out_channels, 1, 1, f"{n}_conv3", f"{n}_bn3")
        attention_name = None
    else:  # bottleneck v1.5, grouped when cardinality > 1 (ResNeXt)
        width = int(planes * layout.base_width / 64) * layout.cardinality
        y = _conv_bn(x, width, 1, 1, f"{n}_conv1", f"{n}_bn1", f"{n}_act1")
        y = _conv_bn(
            y, width, 3, strides, f"{n}_conv2", f"{n}_bn2", f"{n}_act2", layout.cardinality
        )
        y = _conv_bn(y, out_channels, 1, 1, f"{n}_conv3", f"{n}_bn3")
        attention_name = f"{n}_se"
    if attention_name and layout.attention:
        y = _attention(layout.attention, out_channels, attention_name)(y)
    shortcut = x
    if strides != 1 or in_channels != out_channels:
        down = f"{n}_shortcut" if layout.block == "byob" else f"{n}_downsample"
        if layout.block == "byob":
            shortcut = _conv_bn(x, out_channels, 1, strides, f"{down}_conv", f"{down}_bn")
        else:
            shortcut = _shortcut(x, out_channels, strides, down, layout.avg_down)
    y = keras.layers.Add(name=f"{n}_add")([shortcut, y])
    return _act(y, f"{n}_act")


def build(layout, name, input_shape, classes, include_top, pooling, head_name, preprocessing=None):
    """The functional model of `layout`; `head_name` names the classifier layer.

    `preprocessing`: None, or (mean, std) per RGB channel: a Keras
    `Normalization` layer named "preprocessing" then takes images in [0, 1].
    """
    _common.check_pooling(pooling)
    if include_top:
        _common.check_classes(classes)
    inputs = _common.image_input(input_shape)
    x = inputs
    if preprocessing is not None:
        mean, std = preprocessing
        x = keras.layers.Normalization(
            axis=_common.channel_axis(),
            mean=list(mean),
            variance=[s * s for s in std],
            name="preprocessing",
        )(x)
    x = _stem(x, layout)
    for stage, count in enumerate(layout.blocks):
        planes = 64 * 2**stage
        for index in range(count):
            strides = 2 if stage > 0 and index == 0 else 1
            if layout.block == "byob":
                block_name = f"stages_{stage}_{index}"
            else:
                block_name = f"layer{stage + 1}_{index}"
            x = _block(x, layout, planes, strides, block_name)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        outputs = keras.layers.Dense(classes, dtype="float32", name=head_name)(x)
    else:
        outputs = _common.classifier_top(x, False, pooling, classes)
    return keras.Model(inputs, outputs, name=name)
