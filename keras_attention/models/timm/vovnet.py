"""timm's eSE-VoVNet family (timm/models/vovnet.py) in Keras.

Lee and Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation"
(VoVNetV2), CVPR 2020 (https://arxiv.org/abs/1911.06667). One-shot
aggregation (OSA) blocks: a chain of 3x3 conv-BN-ReLU layers whose outputs
are all concatenated with the block's input, a 1x1 conv-BN-ReLU, then
`layers.EffectiveSqueezeExcitation` on each stage's last block and a residual
on every block but a stage's first. "_dw" nets use separable convs
(depthwise 3x3 + pointwise 1x1) and a 1x1 reduction before the chain.
Layers are named after timm's module paths, "." -> "_".
"""

import dataclasses
import functools

import keras

from keras_attention import layers
from keras_attention.models import _common
from keras_attention.models.timm.blocks import check_top
from keras_attention.models.timm.blocks import conv
from keras_attention.models.timm.blocks import conv_bn
from keras_attention.models.timm.blocks import finish
from keras_attention.models.timm.blocks import model_inputs
from keras_attention.models.timm.spec import spec


@dataclasses.dataclass(frozen=True)
class Layout:
    """timm's VoVNet cfg: stem widths, per-stage chain/output widths, blocks, depthwise."""

    stem: tuple
    blocks: tuple
    layers_per_block: int
    depthwise: bool = False
    mid: tuple = (128, 160, 192, 224)
    out: tuple = (256, 512, 768, 1024)


def _conv_norm_act(x, filters, kernel_size, strides, name):
    """timm's ConvNormAct: conv (no bias), BN, ReLU."""
    return conv_bn(x, filters, kernel_size, strides, f"{name}_conv", f"{name}_bn", f"{name}_act")


def _separable(x, filters, strides, name):
    """timm's SeparableConvNormAct: depthwise 3x3, pointwise 1x1 (no biases), BN, ReLU."""
    channels = x.shape[_common.channel_axis()]
    x = conv(x, channels, 3, strides, f"{name}_conv_dw", groups=channels)
    return conv_bn(x, filters, 1, 1, f"{name}_conv_pw", f"{name}_bn", f"{name}_act")


def _osa_block(x, layout, mid, out, residual, attention, name):
    shortcut = x
    in_channels = x.shape[_common.channel_axis()]
    if layout.depthwise and in_channels != mid:
        x = _conv_norm_act(x, mid, 1, 1, f"{name}_conv_reduction")
    outputs = [shortcut]  # the block's input, not the reduction's output, is concatenated
    for i in range(layout.layers_per_block):
        n = f"{name}_conv_mid_{i}"
        x = _separable(x, mid, 1, n) if layout.depthwise else _conv_norm_act(x, mid, 3, 1, n)
        outputs.append(x)
    x = keras.layers.Concatenate(axis=_common.channel_axis(), name=f"{name}_concat")(outputs)
    x = _conv_norm_act(x, out, 1, 1, f"{name}_conv_concat")
    if attention:
        x = layers.EffectiveSqueezeExcitation(name=f"{name}_attn")(x)
    if residual:
        x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return x


def _max_pool_ceil(x, name):
    # PyTorch's MaxPool2d(3, 2, ceil_mode=True) on ReLU outputs: one zero row
    # and column after the end give the same windows and maxima.
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name=name)(x)


def build(layout, options):
    """The functional eSE-VoVNet of `layout` (stem stride 4, as timm's defaults), as
    `options` (a `BuildOptions`) asks."""
    if options.output_stride != 32:
        raise ValueError(
            f"{options.name!r} cannot be built with an output_stride other than 32: timm's "
            f"VoVNet has no dilation. Received: output_stride={options.output_stride!r}"
        )
    check_top(options)
    inputs, x = model_inputs(options)
    x = _conv_norm_act(x, layout.stem[0], 3, 2, "stem_0")
    for i, strides in ((1, 1), (2, 2)):
        if layout.depthwise:
            x = _separable(x, layout.stem[i], strides, f"stem_{i}")
        else:
            x = _conv_norm_act(x, layout.stem[i], 3, strides, f"stem_{i}")
        if i == 1:  # timm's first feature: the stride-2 map before the stem's second stride
            features = [(x, "stem.1", 2, 2)]
    for stage, count in enumerate(layout.blocks):
        if stage > 0:
            x = _max_pool_ceil(x, f"stages_{stage}_pool")
        for j in range(count):
            x = _osa_block(
                x,
                layout,
                layout.mid[stage],
                layout.out[stage],
                residual=j > 0,
                attention=j == count - 1,
                name=f"stages_{stage}_blocks_{j}",
            )
        features.append((x, f"stages.{stage}", 4 * 2**stage, 4 * 2**stage))
    return finish(inputs, x, options, features)


def _entry(layout, tag, **kwargs):
    return spec(functools.partial(build, layout), tag, head="head.fc", **kwargs)


MODELS = {
    "ese_vovnet19b_dw": _entry(Layout((64, 64, 64), (1, 1, 1, 1), 3, True), "ra_in1k"),
    "ese_vovnet39b": _entry(Layout((64, 64, 128), (1, 1, 2, 2), 5), "ra_in1k"),
    "ese_vovnet57b": _entry(
        Layout((64, 64, 128), (1, 1, 4, 3), 5),
        "ra4_e3600_r256_in1k",
        size=256,
        crop=0.95,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
}

SUBLAYERS = {layers.EffectiveSqueezeExcitation: {"fc": "fc"}}
