"""timm's RegNetZ networks (timm/models/byobnet.py: regnetz_b16 ... regnetz_e8) in Keras.

RegNetZ (Dollar et al., "Fast and Accurate Model Scaling", CVPR 2021,
https://arxiv.org/abs/2103.06877) uses inverted bottlenecks: 1x1 expansion
of the block's *input* width by the bottle ratio, a grouped 3x3, SE (hidden
width a quarter of the expanded width, ReLU), a 1x1 projection and no
activation after the sum ("linear out"), all in SiLU. timm's sizing differs
from the paper's: its stage widths and depths are listed per network, with a
shortcut only where a block keeps its width and resolution (no projection
shortcuts), and a 1x1 conv + BN + SiLU to `num_features` before pooling.
Layers are named after timm's module paths with "." -> "_"
(`stages_0_0_conv2_kxk_conv`, `stages_0_0_attn`, `final_conv_conv`).
"""

import dataclasses
import functools

import keras

from keras_attention import layers
from keras_attention.models import _common
from keras_attention.models.timm.blocks import act
from keras_attention.models.timm.blocks import check_top
from keras_attention.models.timm.blocks import conv_bn
from keras_attention.models.timm.blocks import finish
from keras_attention.models.timm.blocks import make_divisible
from keras_attention.models.timm.blocks import model_inputs
from keras_attention.models.timm.features import dilated_stages
from keras_attention.models.timm.spec import spec


@dataclasses.dataclass(frozen=True)
class RegNetZConfig:
    """One of timm's RegNetZ ByoModelCfgs."""

    depths: tuple  # blocks per stage
    widths: tuple  # output channels per stage
    first_stride: int  # stride of the first stage (the tiered stem already strides by 4)
    group_size: int  # channels per group of the 3x3 conv
    bottle_ratio: float  # expansion of the block's input width
    num_features: int  # width of the final 1x1 conv
    stem: str = "3x3"  # "3x3": one strided 3x3 | "tiered": three 3x3, strides 2, 1, 2
    stem_width: int = 32


def _conv_bn_silu(x, filters, kernel_size, strides, name, groups=1, dilation=1):
    """timm's ConvNormAct with SiLU: `{name}.conv` and `{name}.bn`."""
    x = conv_bn(
        x,
        filters,
        kernel_size,
        strides,
        f"{name}_conv",
        f"{name}_bn",
        groups=groups,
        dilation=dilation,
    )
    return act(x, f"{name}_act", "silu")


def _stem(x, config):
    """(the stem's output, its stride-2 feature map: timm's first `feature_info` entry)."""
    if config.stem == "3x3":
        x = _conv_bn_silu(x, config.stem_width, 3, 2, "stem")
        return x, (x, "stem", 2, 2)
    widths = (3 * config.stem_width // 8, config.stem_width // 2, config.stem_width)
    for i, (filters, strides) in enumerate(zip(widths, (2, 1, 2), strict=True)):
        if i == 2:  # the map before the strided third conv
            feature = (x, "stem.conv2", 2, 2)
        x = _conv_bn_silu(x, filters, 3, strides, f"stem_conv{i + 1}")
    return x, feature


def _block(x, config, filters, strides, name, dilation=(1, 1)):
    """timm's byobnet BottleneckBlock with bottle_in=True, linear_out=True, downsample=''.

    `dilation`: (the 3x3's, the stage's), timm's pair; a pair that differs
    drops the shortcut, as a stride does.
    """
    in_channels = x.shape[_common.channel_axis()]
    mid = make_divisible(in_channels * config.bottle_ratio)
    y = _conv_bn_silu(x, mid, 1, 1, f"{name}_conv1_1x1")
    groups = mid // config.group_size
    y = _conv_bn_silu(y, mid, 3, strides, f"{name}_conv2_kxk", groups, dilation[0])
    # timm's SEModule(rd_ratio=0.25): its default divisor 8 and ReLU, in SiLU nets too.
    units = make_divisible(mid * 0.25, 8, round_limit=0.0)
    y = layers.SqueezeExcitation(units=units, name=f"{name}_attn")(y)
    y = conv_bn(y, filters, 1, 1, f"{name}_conv3_1x1_conv", f"{name}_conv3_1x1_bn")
    if strides == 1 and in_channels == filters and dilation[0] == dilation[1]:
        y = keras.layers.Add(name=f"{name}_add")([y, x])  # else no shortcut (downsample='')
    return y


def build(config, options):
    """The functional RegNetZ of `config`, built as `options` (a `BuildOptions`) asks."""
    check_top(options)
    inputs, x = model_inputs(options)
    x, stem_feature = _stem(x, config)
    features = [stem_feature]
    strides = [config.first_stride] + [2] * (len(config.depths) - 1)
    stem_reduction = 2 if config.stem == "3x3" else 4
    plan = dilated_stages(strides, options.output_stride, stem_reduction)
    for stage, (depth, width, (stride, first, dilation, reduction)) in enumerate(
        zip(config.depths, config.widths, plan, strict=True)
    ):
        for index in range(depth):
            rates = (first if index == 0 else dilation, dilation)
            block_strides = stride if index == 0 else 1
            x = _block(x, config, width, block_strides, f"stages_{stage}_{index}", rates)
        features.append((x, f"stages.{stage}", reduction, 4 * 2**stage))
    x = _conv_bn_silu(x, config.num_features, 1, 1, "final_conv")
    features[-1] = (x, "final_conv", *features[-1][2:])  # timm's last feature: final_conv's
    return finish(inputs, x, options, features)


def _entry(config, **kwargs):
    return spec(
        functools.partial(build, config),
        "ra3_in1k",
        head="head.fc",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        **kwargs,
    )


_B_C = {"depths": (2, 6, 12, 2), "widths": (48, 96, 192, 288), "first_stride": 2}
_D = {"depths": (3, 6, 12, 3), "widths": (64, 128, 256, 384), "first_stride": 1}
_TIERED = {"stem": "tiered", "stem_width": 64}

# timm's ByoModelCfgs, and the ra3_in1k tag's preprocessing (timm's pretrained_cfgs).
MODELS = {
    "regnetz_b16": _entry(
        RegNetZConfig(**_B_C, group_size=16, bottle_ratio=3, num_features=1536), crop=0.94
    ),
    "regnetz_c16": _entry(
        RegNetZConfig(**_B_C, group_size=16, bottle_ratio=4, num_features=1536),
        size=256,
        crop=0.94,
    ),
    "regnetz_d32": _entry(
        RegNetZConfig(**_D, group_size=32, bottle_ratio=4, num_features=1792, **_TIERED),
        size=256,
        crop=0.95,
    ),
    "regnetz_d8": _entry(
        RegNetZConfig(**_D, group_size=8, bottle_ratio=4, num_features=1792, **_TIERED),
        size=256,
        crop=0.94,
    ),
    "regnetz_e8": _entry(
        RegNetZConfig((3, 8, 16, 3), (96, 192, 384, 512), 1, 8, 4, 2048, **_TIERED),
        size=256,
        crop=0.94,
    ),
}

# Our composite layers: timm's submodule path -> our sublayer attribute.
SUBLAYERS = {layers.SqueezeExcitation: {"fc1": "reduce", "fc2": "expand"}}
