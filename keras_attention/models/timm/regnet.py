"""timm's RegNetY family (timm/models/regnet.py) in Keras.

RegNet (Radosavovic et al., "Designing Network Design Spaces", CVPR 2020,
https://arxiv.org/abs/2003.13678) generates its per-block widths from four
numbers (w0, wa, wm, depth) and a group width; RegNetY adds a
Squeeze-and-Excitation after the grouped 3x3 of each bottleneck, its hidden
width a quarter of the block's input width. Layers are named after timm's
module paths with "." replaced by "_" (`s1_b1_conv2_conv`, `s1_b1_se`).
"""

import dataclasses
import functools
import math

import keras
import numpy as np

from keras_attention import layers
from keras_attention.models import _common
from keras_attention.models.timm.blocks import act
from keras_attention.models.timm.blocks import check_top
from keras_attention.models.timm.blocks import conv_bn
from keras_attention.models.timm.blocks import finish
from keras_attention.models.timm.blocks import model_inputs
from keras_attention.models.timm.spec import spec


@dataclasses.dataclass(frozen=True)
class RegNetConfig:
    """The design-space point of one RegNet (the paper's Table / timm's model_cfgs)."""

    w0: int  # initial width
    wa: float  # width slope
    wm: float  # width multiplier between stages
    depth: int  # blocks in all
    group_size: int  # channels per group of the 3x3 conv
    se_ratio: float = 0.25  # SE hidden width / block input width
    stem_width: int = 32


def stage_layout(config, quant=8):
    """[(width, depth, group size)] of each stage, generated as timm's `generate_regnet`.

    Block i's continuous width is w0 + wa * i; it is snapped to w0 * wm**k
    (k rounded in log space), quantised to a multiple of `quant`, and
    consecutive equal widths form a stage. Each stage's width is then rounded
    to a multiple of its group size (the group size capped at the width).
    timm computes the snapping in float32; so does this, so that widths on a
    rounding boundary come out the same.
    """
    w0, wa, wm = np.float32(config.w0), np.float32(config.wa), np.float32(config.wm)
    continuous = np.arange(config.depth, dtype=np.float32) * wa + w0
    exponents = np.round(np.log(continuous / w0) / np.float32(math.log(config.wm)))
    widths = np.round(w0 * np.power(wm, exponents) / quant) * quant
    stage_widths, stage_depths = np.unique(widths.astype(np.int64), return_counts=True)
    layout = []
    for width, depth in zip(stage_widths.tolist(), stage_depths.tolist(), strict=True):
        group_size = min(config.group_size, width)
        layout.append((int(round(width / group_size) * group_size), depth, group_size))
    return layout


def _block(x, width, strides, group_size, se_ratio, name, dilation=1):
    """timm's regnet.Bottleneck (bottle ratio 1): 1x1 -> grouped 3x3 -> SE -> 1x1, + shortcut."""
    in_channels = x.shape[_common.channel_axis()]
    n = name
    y = conv_bn(x, width, 1, 1, f"{n}_conv1_conv", f"{n}_conv1_bn", f"{n}_conv1_act")
    groups = width // group_size
    y = conv_bn(
        y,
        width,
        3,
        strides,
        f"{n}_conv2_conv",
        f"{n}_conv2_bn",
        f"{n}_conv2_act",
        groups,
        dilation=dilation,
    )
    # timm's rounding: Python's round of the block's input width times the ratio.
    y = layers.SqueezeExcitation(units=round(in_channels * se_ratio), name=f"{n}_se")(y)
    y = conv_bn(y, width, 1, 1, f"{n}_conv3_conv", f"{n}_conv3_bn")
    shortcut = x
    if strides != 1 or in_channels != width:
        shortcut = conv_bn(x, width, 1, strides, f"{n}_downsample_conv", f"{n}_downsample_bn")
    y = keras.layers.Add(name=f"{n}_add")([y, shortcut])
    return act(y, f"{n}_act3")


def build(config, options):
    """The functional RegNetY of `config`, built as `options` (a `BuildOptions`) asks."""
    check_top(options)
    inputs, x = model_inputs(options)
    x = conv_bn(x, config.stem_width, 3, 2, "stem_conv", "stem_bn", "stem_act")
    features = [(x, "stem", 2, 2)]
    # timm's RegNet: once the stride reaches output_stride, a stage dilates instead;
    # its first block's 3x3 is dilated by 1 (dilation 2) or 2 (dilation 4).
    net_stride, dilation = 2, 1
    for stage, (width, depth, group_size) in enumerate(stage_layout(config)):
        stride = 2
        if net_stride >= options.output_stride:
            dilation, stride = dilation * 2, 1
        else:
            net_stride *= stride
        first_dilation = 1 if dilation in (1, 2) else 2
        for index in range(depth):
            strides = stride if index == 0 else 1
            block_name = f"s{stage + 1}_b{index + 1}"
            rate = first_dilation if index == 0 else dilation
            x = _block(x, width, strides, group_size, config.se_ratio, block_name, rate)
        features.append((x, f"s{stage + 1}", net_stride, 4 * 2**stage))
    return finish(inputs, x, options, features)


def _entry(w0, wa, wm, depth, group_size, tag, **kwargs):
    config = RegNetConfig(w0=w0, wa=wa, wm=wm, depth=depth, group_size=group_size)
    return spec(functools.partial(build, config), tag, head="head.fc", **kwargs)


# The design points are timm's model_cfgs (pycls's RegNetY); the default tag and
# its preprocessing, and the other tags' where they differ, are timm's pretrained_cfgs.
_PYCLS = {"pycls_in1k": {"crop": 0.875}}
_TV2 = {"tv2_in1k": {"crop": 0.965}}
_SWAG = {"swag_ft_in1k": {"size": 384, "crop": 1.0}, "swag_lc_in1k": {"crop": 0.965}}
MODELS = {
    "regnety_002": _entry(24, 36.44, 2.49, 13, 8, "pycls_in1k"),
    "regnety_004": _entry(48, 27.89, 2.09, 16, 8, "tv2_in1k", crop=0.965, tags={**_PYCLS}),
    "regnety_006": _entry(48, 32.54, 2.32, 15, 16, "pycls_in1k"),
    "regnety_008": _entry(56, 38.84, 2.4, 14, 16, "pycls_in1k"),
    "regnety_016": _entry(48, 20.71, 2.65, 27, 24, "tv2_in1k", crop=0.965, tags={**_PYCLS}),
    "regnety_032": _entry(80, 42.63, 2.66, 21, 24, "ra_in1k", crop=0.95, tags={**_PYCLS, **_TV2}),
    "regnety_040": _entry(96, 31.41, 2.24, 22, 64, "ra3_in1k", crop=0.95, tags={**_PYCLS}),
    "regnety_064": _entry(112, 33.22, 2.27, 25, 72, "ra3_in1k", crop=0.95, tags={**_PYCLS}),
    "regnety_080": _entry(192, 76.82, 2.19, 17, 56, "ra3_in1k", crop=0.95, tags={**_PYCLS}),
    # The ImageNet-12k-pretrained weights are the default; "sw_in12k" is the
    # 11,821-class checkpoint itself (from_timm keeps its classifier).
    "regnety_120": _entry(
        168, 73.36, 2.37, 19, 112, "sw_in12k_ft_in1k", crop=0.95, tags={"sw_in12k": {}, **_PYCLS}
    ),
    "regnety_160": _entry(
        200,
        106.23,
        2.48,
        18,
        112,
        "sw_in12k_ft_in1k",
        crop=0.95,
        tags={
            "sw_in12k": {},
            "lion_in12k_ft_in1k": {},
            "deit_in1k": {},
            **_PYCLS,
            **_TV2,
            **_SWAG,
        },
    ),
    "regnety_320": _entry(
        232,
        115.89,
        2.53,
        20,
        232,
        "tv2_in1k",
        crop=0.965,
        tags={**_PYCLS, **_SWAG, "seer_ft_in1k": {"size": 384, "crop": 1.0}, "seer": {}},
    ),
}

# Our composite layers: timm's submodule path -> our sublayer attribute.
SUBLAYERS = {layers.SqueezeExcitation: {"fc1": "reduce", "fc2": "expand"}}
