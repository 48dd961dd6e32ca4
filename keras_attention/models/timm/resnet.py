"""timm's ResNet family (timm/models/resnet.py, resnest.py, sknet.py, senet.py) in Keras.

`build(layout, ...)` assembles a network from a `Layout`: the stem (7x7,
deep, deep-tiered, Caffe's; its max pool, ResNet-RS's strided conv or the
anti-aliased average pool), the shortcut (strided 1x1 conv or
average-pool-down), the block (basic, bottleneck, ResNeXt's grouped
bottleneck, ResNeSt's split-attention bottleneck, SK-ResNet's selective-kernel
basic block and SKNet's grouped selective-kernel bottleneck, the SE authors'
Caffe bottleneck) and the attention layer of each
block. Layers are named after timm's module paths with "." replaced by "_"
(e.g. `layer1_0_conv1`), which is what lets `convert` map each checkpoint
tensor to one Keras variable.
"""

import dataclasses
import functools

import keras

from keras_attention import layers
from keras_attention.models import _common
from keras_attention.models.timm.blocks import CHANNEL_ATTENTION_SUBLAYERS
from keras_attention.models.timm.blocks import act as _act
from keras_attention.models.timm.blocks import channel_attention
from keras_attention.models.timm.blocks import check_top
from keras_attention.models.timm.blocks import conv_bn as _conv_bn
from keras_attention.models.timm.blocks import finish
from keras_attention.models.timm.blocks import make_divisible
from keras_attention.models.timm.blocks import model_inputs
from keras_attention.models.timm.spec import spec


@dataclasses.dataclass(frozen=True)
class Layout:
    """One timm architecture: what the builder needs to reproduce it exactly."""

    blocks: tuple  # blocks per stage
    # basic | bottleneck | resnest | sk_basic | sk_bottleneck | legacy
    block: str = "bottleneck"
    stem: str = ""  # "" (7x7) | deep | deep_tiered | legacy
    stem_width: int = 64
    avg_down: bool = False
    cardinality: int = 1
    base_width: int = 64
    attention: str | None = None  # se | eca | gc | legacy_se
    se_ratio: float = 1 / 16  # "se": its width is make_divisible(channels * se_ratio, 8)
    radix: int = 1  # resnest
    avd_first: bool = False  # resnest: the strided 3x3 average pool before the 3x3 conv
    # ResNet-RS: a strided 3x3 conv + BN + ReLU (timm's "maxpool.0/1/2") instead of the max pool.
    replace_stem_pool: bool = False
    # timm's aa_layer=nn.AvgPool2d: a 2x2 average pool does every stride-2 step of the
    # stem pool and of the blocks' 3x3 convs (which then run at stride 1).
    avg_pool_aa: bool = False


def _max_pool(x, name, ceil_mode=False):
    # Zero padding equals PyTorch's -inf padding here: the inputs are ReLU outputs.
    # Caffe's ceil mode (no padding) equals one zero row/column after the end.
    padding = ((0, 1), (0, 1)) if ceil_mode else 1
    x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name=name)(x)


def _stem(x, layout):
    """(the stem's output, its stride-2 feature map: timm's first `feature_info` entry)."""
    if layout.stem == "":
        x = _conv_bn(x, 64, 7, 2, "conv1", "bn1", "act1")
        return _stem_pool(x, layout), (x, "act1", 2, 2)
    if layout.stem == "legacy":
        x = _conv_bn(x, 64, 7, 2, "layer0_conv1", "layer0_bn1", "layer0_relu1")
        return _max_pool(x, "pool0", ceil_mode=True), (x, "layer0", 2, 2)
    width = layout.stem_width
    first = 3 * (width // 4) if layout.stem == "deep_tiered" else width
    x = _conv_bn(x, first, 3, 2, "conv1_0", "conv1_1", "conv1_2")
    x = _conv_bn(x, width, 3, 1, "conv1_3", "conv1_4", "conv1_5")
    x = _conv_bn(x, 2 * width, 3, 1, "conv1_6", "bn1", "act1")
    return _stem_pool(x, layout), (x, "act1", 2, 2)


def _stem_pool(x, layout):
    if layout.replace_stem_pool:
        channels = x.shape[_common.channel_axis()]
        return _conv_bn(x, channels, 3, 2, "maxpool_0", "maxpool_1", "maxpool_2")
    if layout.avg_pool_aa:
        return keras.layers.AveragePooling2D(2, name="maxpool")(x)
    return _max_pool(x, "maxpool")


def _attention(kind, channels, name, se_ratio=1 / 16):
    if kind == "se":
        units = make_divisible(channels * se_ratio, 8, round_limit=0.0)
        return layers.SqueezeExcitation(units=units, name=name)
    if kind == "legacy_se":
        return layers.SqueezeExcitation(units=channels // 16, name=name)
    return channel_attention(kind, channels, name)


def _selective_kernel(filters, strides, name, groups=1, dilation=1):
    """timm's SelectiveKernel: a 3x3 branch and a 3x3 dilated by 2 (its 5x5 under keep_3x3).

    skresnet18/34 (`groups=1`): the input split between the branches and an
    attention width of make_divisible(filters / 8, 16) (rd_ratio=1/8,
    rd_divisor=16). skresnext50_32x4d (`groups=32`): each branch convolves the
    whole input, attention width make_divisible(filters / 16, 32) (rd_ratio=1/16,
    rd_divisor=32, split_input=False).
    """
    grouped = groups > 1
    return layers.SelectiveKernel(
        filters=filters,
        dilations=(dilation, 2 * dilation),
        groups=groups,
        units=make_divisible(filters / 16, 32) if grouped else make_divisible(filters / 8, 16),
        strides=strides,
        split_input=not grouped,
        name=name,
    )


def _shortcut(x, out_channels, strides, name, avg_down, dilation=1):
    """The projection shortcut: 1x1 conv (strided) + BN, or average-pool-down + 1x1 conv + BN."""
    if not avg_down:
        return _conv_bn(x, out_channels, 1, strides, f"{name}_0", f"{name}_1")
    if strides > 1:
        # PyTorch's AvgPool2d(2, ceil_mode=True, count_include_pad=False): "same" pads
        # only an odd edge and leaves the padding out of the mean, the same thing.
        x = keras.layers.AveragePooling2D(2, strides, padding="same", name=f"{name}_0")(x)
    elif dilation > 1:
        # A dilated stage: timm's AvgPool2dSame(2, stride 1) pads one zero row and
        # column after the end and counts them in the mean.
        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_0_pad")(x)
        x = keras.layers.AveragePooling2D(2, 1, name=f"{name}_0")(x)
    return _conv_bn(x, out_channels, 1, 1, f"{name}_1", f"{name}_2")


def _avd_pool(x, strides, name):
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return keras.layers.AveragePooling2D(3, strides, name=name)(x)


def _block(x, layout, planes, strides, name, dilation=1, first_dilation=1):
    """One residual block; its first 3x3 dilated by `first_dilation`, the others by
    `dilation` (timm's `make_blocks`: the previous stage's dilation, then this one's)."""
    in_channels = x.shape[_common.channel_axis()]
    expansion = 1 if layout.block in ("basic", "sk_basic") else 4
    out_channels = planes * expansion
    n = name
    if layout.block == "basic":
        y = _conv_bn(
            x, planes, 3, strides, f"{n}_conv1", f"{n}_bn1", f"{n}_act1", dilation=first_dilation
        )
        y = _conv_bn(y, planes, 3, 1, f"{n}_conv2", f"{n}_bn2", dilation=dilation)
        attention_name = f"{n}_se"
    elif layout.block == "sk_basic":  # SK-ResNet: the first 3x3 is a SelectiveKernel
        y = _selective_kernel(planes, strides, f"{n}_conv1", dilation=first_dilation)(x)
        y = _conv_bn(y, planes, 3, 1, f"{n}_conv2_conv", f"{n}_conv2_bn", dilation=dilation)
        attention_name = None
    elif layout.block == "legacy":  # the stride on the first 1x1 (Caffe)
        y = _conv_bn(x, planes, 1, strides, f"{n}_conv1", f"{n}_bn1", f"{n}_relu1")
        y = _conv_bn(y, planes, 3, 1, f"{n}_conv2", f"{n}_bn2", f"{n}_relu2")
        y = _conv_bn(y, out_channels, 1, 1, f"{n}_conv3", f"{n}_bn3")
        attention_name = f"{n}_se_module"
    elif layout.block == "sk_bottleneck":  # SKNet: the grouped 3x3 is a SelectiveKernel
        width = int(planes * layout.base_width / 64) * layout.cardinality
        y = _conv_bn(x, width, 1, 1, f"{n}_conv1_conv", f"{n}_conv1_bn", f"{n}_conv1_act")
        y = _selective_kernel(width, strides, f"{n}_conv2", layout.cardinality, first_dilation)(y)
        y = _conv_bn(y, out_channels, 1, 1, f"{n}_conv3_conv", f"{n}_conv3_bn")
        attention_name = None
    elif layout.block == "resnest":
        width = int(planes * layout.base_width / 64) * layout.cardinality
        y = _conv_bn(x, width, 1, 1, f"{n}_conv1", f"{n}_bn1", f"{n}_act1")
        # "avd": the stride moves to a 3x3 average pool (zeros counted), after the
        # split attention or (avd_first) before it.
        avd = f"{n}_avd_first" if layout.avd_first else f"{n}_avd_last"
        if strides > 1 and layout.avd_first:
            y = _avd_pool(y, strides, avd)
        y = layers.SplitAttention(
            filters=width, radix=layout.radix, cardinality=layout.cardinality, name=f"{n}_conv2"
        )(y)
        if strides > 1 and not layout.avd_first:
            y = _avd_pool(y, strides, avd)
        y = _conv_bn(y, out_channels, 1, 1, f"{n}_conv3", f"{n}_bn3")
        attention_name = None
    else:  # bottleneck v1.5, grouped when cardinality > 1 (ResNeXt)
        width = int(planes * layout.base_width / 64) * layout.cardinality
        aa = layout.avg_pool_aa and strides > 1
        y = _conv_bn(x, width, 1, 1, f"{n}_conv1", f"{n}_bn1", f"{n}_act1")
        y = _conv_bn(
            y,
            width,
            3,
            1 if aa else strides,
            f"{n}_conv2",
            f"{n}_bn2",
            f"{n}_act2",
            layout.cardinality,
            dilation=first_dilation,
        )
        if aa:
            y = keras.layers.AveragePooling2D(2, strides, name=f"{n}_aa")(y)
        y = _conv_bn(y, out_channels, 1, 1, f"{n}_conv3", f"{n}_bn3")
        attention_name = f"{n}_se"
    if attention_name and layout.attention:
        y = _attention(layout.attention, out_channels, attention_name, layout.se_ratio)(y)
    shortcut = x
    if strides != 1 or in_channels != out_channels:
        shortcut = _shortcut(x, out_channels, strides, f"{n}_downsample", layout.avg_down, dilation)
    y = keras.layers.Add(name=f"{n}_add")([shortcut, y])
    return _act(y, f"{n}_act")


def build(layout, options):
    """The functional model of `layout`, built as `options` (a `BuildOptions`) asks."""
    check_top(options)
    if options.output_stride != 32 and layout.block in ("resnest", "legacy"):
        why = {
            "resnest": "SplitAttention has no dilation here.",
            "legacy": "timm's SENet (legacy_*) has no output_stride either.",
        }[layout.block]
        raise ValueError(
            f"{options.name!r} cannot be built with an output_stride other than 32: {why} "
            f"Received: output_stride={options.output_stride!r}"
        )
    inputs, x = model_inputs(options)
    x, stem_feature = _stem(x, layout)
    features = [stem_feature]
    # timm's make_blocks: once the stride reaches output_stride, a stage dilates instead.
    net_stride, dilation, previous_dilation = 4, 1, 1
    for stage, count in enumerate(layout.blocks):
        planes = 64 * 2**stage
        stride = 1 if stage == 0 else 2
        if net_stride >= options.output_stride:
            dilation, stride = dilation * stride, 1
        else:
            net_stride *= stride
        for index in range(count):
            strides = stride if index == 0 else 1
            name = f"layer{stage + 1}_{index}"
            x = _block(x, layout, planes, strides, name, dilation, previous_dilation)
            previous_dilation = dilation
        features.append((x, f"layer{stage + 1}", net_stride, 4 * 2**stage))
    return finish(inputs, x, options, features)


_CAFFE_URL = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/"


def _entry(layout, tag, **kwargs):
    return spec(functools.partial(build, layout), tag, **kwargs)


_R18, _R34, _R50, _R101 = (2, 2, 2, 2), (3, 4, 6, 3), (3, 4, 6, 3), (3, 4, 23, 3)
_R152, _R200, _R269 = (3, 8, 36, 3), (3, 24, 36, 3), (3, 30, 48, 8)
_D = {"stem": "deep", "stem_width": 32, "avg_down": True}
_T = {"stem": "deep_tiered", "stem_width": 32, "avg_down": True}
_E = {"stem": "deep", "stem_width": 64, "avg_down": True}  # ResNeSt's "e": a 64-wide deep stem
_SEXT = {"cardinality": 32, "attention": "se"}  # SE-ResNeXt 32xNd
# ResNet-RS (Bello et al., 2021): SE at ratio 1/4, deep stem without a max pool.
_RS = {"attention": "se", "se_ratio": 0.25, "replace_stem_pool": True, **_D}

# timm's default pretrained tag and its preprocessing, for each supported name.
MODELS = {
    "resnet18": _entry(Layout(_R18, "basic"), "a1_in1k", crop=0.95),
    "resnet34": _entry(Layout(_R34, "basic"), "a1_in1k", crop=0.95),
    "resnet50": _entry(Layout(_R50), "a1_in1k", crop=0.95),
    "resnet101": _entry(Layout(_R101), "a1h_in1k", crop=0.95),
    "resnet50d": _entry(Layout(_R50, **_D), "ra2_in1k"),
    # Gluon's ResNet-101 v1s: the 64-wide deep stem, no average-pool-down. The dilated
    # backbone of DANet's released code (PyTorch-Encoding's "resnet101", deep_stem=True).
    "resnet101s": _entry(Layout(_R101, stem="deep", stem_width=64), "gluon_in1k"),
    "seresnet50": _entry(Layout(_R50, attention="se"), "a1_in1k", crop=0.95),
    "seresnet152d": _entry(Layout(_R152, attention="se", **_D), "ra2_in1k", size=256, crop=0.95),
    "legacy_seresnet50": _entry(
        Layout(_R50, "legacy", stem="legacy", attention="legacy_se"),
        "in1k",
        interpolation="bilinear",
        head="last_linear",
        url=_CAFFE_URL + "se_resnet50-ce0d4300.pth",
    ),
    "seresnext50_32x4d": _entry(
        Layout(_R50, cardinality=32, base_width=4, attention="se"), "racm_in1k"
    ),
    "ecaresnet26t": _entry(Layout(_R18, attention="eca", **_T), "ra2_in1k", size=256),
    "ecaresnet50d": _entry(Layout(_R50, attention="eca", **_D), "miil_in1k"),
    "ecaresnet50t": _entry(Layout(_R50, attention="eca", **_T), "ra2_in1k", size=256),
    "ecaresnet101d": _entry(Layout(_R101, attention="eca", **_D), "miil_in1k"),
    "ecaresnetlight": _entry(Layout((1, 1, 11, 3), attention="eca", avg_down=True), "miil_in1k"),
    "resnest14d": _entry(
        Layout((1, 1, 1, 1), "resnest", radix=2, **_D), "gluon_in1k", interpolation="bilinear"
    ),
    "resnest26d": _entry(
        Layout(_R18, "resnest", radix=2, **_D), "gluon_in1k", interpolation="bilinear"
    ),
    "resnest50d": _entry(Layout(_R50, "resnest", radix=2, **_D), "in1k", interpolation="bilinear"),
    "skresnet18": _entry(Layout(_R18, "sk_basic"), "ra_in1k"),
    "skresnet34": _entry(Layout(_R34, "sk_basic"), "ra_in1k"),
    # Depth and width variants.
    "resnest101e": _entry(
        Layout(_R101, "resnest", radix=2, **_E), "in1k", size=256, interpolation="bilinear"
    ),
    "resnest200e": _entry(Layout(_R200, "resnest", radix=2, **_E), "in1k", size=320, crop=0.909),
    "resnest269e": _entry(Layout(_R269, "resnest", radix=2, **_E), "in1k", size=416, crop=0.928),
    "resnest50d_1s4x24d": _entry(
        Layout(_R50, "resnest", radix=1, cardinality=4, base_width=24, avd_first=True, **_D), "in1k"
    ),
    "resnest50d_4s2x40d": _entry(
        Layout(_R50, "resnest", radix=4, cardinality=2, base_width=40, avd_first=True, **_D), "in1k"
    ),
    "seresnext26d_32x4d": _entry(Layout(_R18, base_width=4, **_SEXT, **_D), "bt_in1k"),
    "seresnext26t_32x4d": _entry(Layout(_R18, base_width=4, **_SEXT, **_T), "bt_in1k"),
    "seresnext101_32x4d": _entry(Layout(_R101, base_width=4, **_SEXT), "gluon_in1k"),
    "seresnext101_32x8d": _entry(Layout(_R101, base_width=8, **_SEXT), "ah_in1k", crop=0.95),
    "seresnext101d_32x8d": _entry(Layout(_R101, base_width=8, **_SEXT, **_D), "ah_in1k", crop=0.95),
    "seresnextaa101d_32x8d": _entry(
        Layout(_R101, base_width=8, avg_pool_aa=True, **_SEXT, **_D),
        "sw_in12k_ft_in1k_288",
        size=288,
        crop=0.95,
    ),
    "ecaresnet269d": _entry(Layout(_R269, attention="eca", **_D), "ra2_in1k", size=320, crop=0.95),
    "skresnext50_32x4d": _entry(
        Layout(_R50, "sk_bottleneck", cardinality=32, base_width=4), "ra_in1k"
    ),
    "resnetrs50": _entry(Layout(_R50, **_RS), "tf_in1k", size=160, crop=0.91),
    "resnetrs101": _entry(Layout(_R101, **_RS), "tf_in1k", size=192, crop=0.94),
    "resnetrs152": _entry(Layout(_R152, **_RS), "tf_in1k", size=256, crop=1.0),
    "resnetrs200": _entry(Layout(_R200, **_RS), "tf_in1k", size=256, crop=1.0),
    "resnetrs270": _entry(Layout((4, 29, 53, 4), **_RS), "tf_in1k", size=256, crop=1.0),
    "resnetrs350": _entry(Layout((4, 36, 72, 4), **_RS), "tf_in1k", size=288, crop=1.0),
    "resnetrs420": _entry(Layout((4, 44, 87, 4), **_RS), "tf_in1k", size=320, crop=1.0),
}

# Our composite layers: timm's submodule path -> our sublayer attribute (or a
# function of the layer returning that mapping).
SUBLAYERS = {
    **CHANNEL_ATTENTION_SUBLAYERS,
    layers.SplitAttention: {name: name for name in ("conv", "bn0", "fc1", "bn1", "fc2")},
    # One conv + BN per branch: list items are "attribute.index".
    layers.SelectiveKernel: lambda layer: {
        **{f"paths.{i}.conv": f"branch_convs.{i}" for i in range(len(layer.dilations))},
        **{f"paths.{i}.bn": f"branch_norms.{i}" for i in range(len(layer.dilations))},
        "attn.fc_reduce": "fuse_dense",
        "attn.bn": "fuse_bn",
        "attn.fc_select": "select",
    },
}
