"""timm's ByobNet family (timm/models/byobnet.py, byoanet.py) in Keras.

timm's "bring your own blocks" networks: a tiered 3x3 stem (with or without
a max pool), four stages of ResNet bottlenecks ("bottle") and self-attention
bottlenecks ("self_attn", the 3x3 replaced by BoTNet's, HaloNet's or a
LambdaNet's layer, followed by BN + activation), an optional 1x1 "final_conv"
and the classifier `head.fc`. Unlike timm's ResNet, the channel attention
(SE, ECA, GC) acts on the bottleneck's mid channels, between the 3x3 and the
last 1x1. Layers are named after timm's module paths, "." -> "_".
"""

import dataclasses
import functools

import keras

from keras_attention import layers
from keras_attention.models import _common
from keras_attention.models.timm.blocks import CHANNEL_ATTENTION_SUBLAYERS
from keras_attention.models.timm.blocks import act
from keras_attention.models.timm.blocks import channel_attention
from keras_attention.models.timm.blocks import check_top
from keras_attention.models.timm.blocks import conv_bn
from keras_attention.models.timm.blocks import finish
from keras_attention.models.timm.blocks import make_divisible
from keras_attention.models.timm.blocks import model_inputs
from keras_attention.models.timm.features import dilated_stages
from keras_attention.models.timm.spec import spec

# The lowest value of SiLU (x * sigmoid(x)), at x = -1.278...: the stem's max pool
# shifts its inputs above 0 so that zero padding acts as PyTorch's -inf padding.
_SILU_MINIMUM = -0.2784645428


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: its output channels and, per block, "bottle" or "self_attn"."""

    channels: int
    blocks: tuple
    strides: int = 2
    group_size: int = 0  # channels per group of the 3x3 convolution; 0: one group
    bottle_ratio: float = 0.25
    self_attention: tuple | None = None  # (kind, kwargs), overriding the network's


@dataclasses.dataclass(frozen=True)
class Layout:
    """One ByobNet architecture (timm's `ByoModelCfg`), in this builder's terms."""

    stages: tuple
    stem_pool: bool = False  # a 3x3 / 2 max pool ends the stem (else its last conv strides)
    activation: str = "relu"
    num_features: int = 0  # channels of the 1x1 "final_conv"; 0: none
    attention: str | None = None  # se | eca | gc (timm's "gca"), on the mid channels
    self_attention: tuple | None = None  # ("bottleneck" | "halo" | "lambda", layer kwargs)
    fixed_size: bool = False  # the self-attention fixes the input size (BoTNet, global lambda)


def _stem(x, layout):
    """timm's tiered stem: 3x3 convs to 24, 32 and 64 channels, then a max pool or a stride.

    Returns the stem's output and its stride-2 feature map (timm's first
    `feature_info` entry: the last conv's output before the pool, or the
    second conv's before the strided third).
    """
    strides = (2, 1, 1) if layout.stem_pool else (2, 1, 2)
    for i, (filters, stride) in enumerate(zip((24, 32, 64), strides, strict=True)):
        if stride > 1 and i > 0:
            feature = (x, f"stem.conv{i}", 2, 2)
        n = f"stem_conv{i + 1}"
        x = conv_bn(
            x, filters, 3, stride, f"{n}_conv", f"{n}_bn", f"{n}_act", activation=layout.activation
        )
    if not layout.stem_pool:
        return x, feature
    feature = (x, "stem.conv3", 2, 2)
    # PyTorch pads the pool with -inf; zero padding is the same above a lower bound.
    floor = 0.0 if layout.activation == "relu" else _SILU_MINIMUM
    if floor:
        x = keras.layers.Rescaling(1.0, offset=-floor, name="stem_pool_shift")(x)
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    if floor:
        x = keras.layers.Rescaling(1.0, offset=floor, name="stem_pool_unshift")(x)
    return x, feature


def _self_attention(x, kind, kwargs, strides, feature_size, name):
    """timm's BottleneckAttn, HaloAttn or LambdaLayer; `feature_size` is the input's (H, W)."""
    if kind == "halo":
        return layers.HaloAttention(strides=strides, name=name, **kwargs)(x)
    if kind == "bottleneck":
        x = layers.BottleneckSelfAttention(feature_size=feature_size, name=name, **kwargs)(x)
    else:  # lambda: relative embeddings of the whole map when context_size is None
        size = feature_size if kwargs.get("context_size", 9) is None else None
        x = layers.LambdaLayer(feature_size=size, name=name, **kwargs)(x)
    if strides > 1:  # timm's stride 2: a 2x2 average pool after the attention
        x = keras.layers.AveragePooling2D(2, name=f"{name}_pool")(x)
    return x


def _block(x, kind, stage, layout, strides, feature_size, name, dilation=(1, 1)):
    """timm's BottleneckBlock or SelfAttnBlock (`kind` "bottle" or "self_attn").

    `dilation`: (the 3x3's, the stage's), timm's pair; a pair that differs
    makes a projection shortcut, as a stride does. timm does not dilate the
    self-attention: in a dilated stage it runs unstrided on the larger map.
    """
    n, activation = name, layout.activation
    in_channels = x.shape[_common.channel_axis()]
    out_channels = stage.channels
    mid = make_divisible(out_channels * stage.bottle_ratio)
    groups = mid // stage.group_size if stage.group_size else 1
    y = conv_bn(
        x,
        mid,
        1,
        1,
        f"{n}_conv1_1x1_conv",
        f"{n}_conv1_1x1_bn",
        f"{n}_conv1_1x1_act",
        activation=activation,
    )
    if kind == "bottle":
        y = conv_bn(
            y,
            mid,
            3,
            strides,
            f"{n}_conv2_kxk_conv",
            f"{n}_conv2_kxk_bn",
            f"{n}_conv2_kxk_act",
            groups=groups,
            activation=activation,
            dilation=dilation[0],
        )
        if layout.attention:
            y = channel_attention(layout.attention, mid, f"{n}_attn")(y)
    else:
        attention_kind, kwargs = stage.self_attention or layout.self_attention
        y = _self_attention(y, attention_kind, kwargs, strides, feature_size, f"{n}_self_attn")
        y = _common.batch_norm(y, f"{n}_post_attn")
        y = act(y, f"{n}_post_attn_act", activation)
    y = conv_bn(y, out_channels, 1, 1, f"{n}_conv3_1x1_conv", f"{n}_conv3_1x1_bn")
    shortcut = x
    if strides != 1 or in_channels != out_channels or dilation[0] != dilation[1]:
        shortcut = conv_bn(x, out_channels, 1, strides, f"{n}_shortcut_conv", f"{n}_shortcut_bn")
    y = keras.layers.Add(name=f"{n}_add")([shortcut, y])
    return act(y, f"{n}_act", activation)


def _spatial_size(input_shape, layout, default_size):
    """The input's (H, W); a fixed-size network with unknown H or W gets timm's default size."""
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
    if len(shape) != 3:
        return None, input_shape  # image_input raises the error
    first = _common.channel_axis() != -1
    size = shape[1:] if first else shape[:2]
    if layout.fixed_size and None in size:
        size = (default_size, default_size)
        input_shape = (shape[0], *size) if first else (*size, shape[2])
    return size, input_shape


def build(layout, options, default_size=256):
    """The functional model of `layout`, built as `options` (a `BuildOptions`) asks.

    BoTNet's and the global lambda layer's relative embeddings fix the input
    size: with an unknown height or width such a model takes `default_size`
    square images. Their embeddings also fix each map's size, so they run at
    output_stride 32 only (timm builds them dilated with larger embeddings,
    which its stride-32 checkpoints do not fill).
    """
    if layout.fixed_size and options.output_stride != 32:
        raise ValueError(
            f"{options.name!r} cannot be built with an output_stride other than 32: its "
            "relative position embeddings are sized for the stride-32 maps (timm's dilated "
            "build has larger ones, which its checkpoints do not fill). "
            f"Received: output_stride={options.output_stride!r}"
        )
    check_top(options)
    size, input_shape = _spatial_size(options.input_shape, layout, default_size)
    inputs, x = model_inputs(options, input_shape)
    x, stem_feature = _stem(x, layout)
    features = [stem_feature]
    feature_size = None if size is None or None in size else tuple(s // 4 for s in size)
    plan = dilated_stages([s.strides for s in layout.stages], options.output_stride, 4)
    for index, (stage, (stride, first, dilation, reduction)) in enumerate(
        zip(layout.stages, plan, strict=True)
    ):
        for block, kind in enumerate(stage.blocks):
            strides = stride if block == 0 else 1
            rates = (first if block == 0 else dilation, dilation)
            name = f"stages_{index}_{block}"
            x = _block(x, kind, stage, layout, strides, feature_size, name, rates)
            if strides > 1 and feature_size is not None:
                feature_size = tuple(s // strides for s in feature_size)
        features.append((x, f"stages.{index}", reduction, 4 * 2**index))
    if layout.num_features:
        x = conv_bn(
            x,
            layout.num_features,
            1,
            1,
            "final_conv_conv",
            "final_conv_bn",
            "final_conv_act",
            activation=layout.activation,
        )
    # timm's last feature is final_conv's output (the last stage's where there is none).
    features[-1] = (x, "final_conv", *features[-1][2:])
    return finish(inputs, x, options, features)


def _mixed(depth, every=1):
    """timm's `interleave_blocks`: "self_attn" at the `every`-spaced indices, else "bottle".

    An int `every` puts one at every (every + 1)-th index from `every` on (the
    last block if none); a tuple names the indices.
    """
    if isinstance(every, int):
        every = tuple(range(every, depth, every + 1)) or (depth - 1,)
    return tuple("self_attn" if i in every else "bottle" for i in range(depth))


def _stages(depths, channels, group_size=0, kinds=None, last_ratio=0.25):
    """Four stages, the first unstrided; `kinds[i]`: stage i's block kinds (default: bottles)."""
    kinds = kinds or ((), (), (), ())
    stages = []
    for i, (depth, width) in enumerate(zip(depths, channels, strict=True)):
        stages.append(
            Stage(
                width,
                kinds[i] or ("bottle",) * depth,
                strides=1 if i == 0 else 2,
                group_size=group_size,
                bottle_ratio=last_ratio if i == 3 else 0.25,
            )
        )
    return tuple(stages)


def _entry(layout, tag, crop=0.9):
    return spec(functools.partial(build, layout), tag, size=256, crop=crop, head="head.fc")


_W26, _W33 = (256, 512, 1024, 2048), (256, 512, 1536, 1536)
_W33SA = (256, 512, 1024, 1536)  # se*33ts: sebotnet33ts, sehalonet33ts
_D26, _D33, _D50 = (2, 2, 2, 2), (2, 3, 3, 2), (3, 4, 6, 3)
_SILU = {"activation": "silu"}
_POOL = {"stem_pool": True}
_NEXT = {**_POOL, **_SILU}  # timm's *resnext26ts / gcresnext50ts
_TS33 = {"num_features": 1280, **_SILU}  # timm's *resnet33ts
_ATTN26 = ((), (), _mixed(2), ("self_attn",) * 2)  # botnet26t / halonet26t / lambda_resnet26t
_ATTN33 = ((), _mixed(3, (2,)), _mixed(3, (2,)), ("self_attn",) * 2)  # se*33ts
_ATTN50 = ((), _mixed(4, 4), _mixed(6), _mixed(3))  # *50ts
_BOT = ("bottleneck", {})
_HALO = ("halo", {"block_size": 8, "halo_size": 3})
_LAMBDA = ("lambda", {"context_size": 9})


def _halo2bot_stages():
    stages = list(_stages(_D50, _W26, kinds=((), _mixed(4), _mixed(6), _mixed(3))))
    stages[1] = dataclasses.replace(stages[1], self_attention=_HALO)
    stages[2] = dataclasses.replace(stages[2], self_attention=_HALO)
    stages[3] = dataclasses.replace(stages[3], self_attention=_BOT)
    return tuple(stages)


def _halonet50ts_stages():
    stages = list(_stages(_D50, _W26, kinds=_ATTN50))
    halo4 = ("halo", {"block_size": 8, "halo_size": 3, "num_heads": 4})
    stages[1] = dataclasses.replace(stages[1], self_attention=halo4)
    return tuple(stages)


# timm's default pretrained tag and its preprocessing, for each supported name.
MODELS = {
    "resnet32ts": _entry(Layout(_stages(_D33, _W33), **_SILU), "ra2_in1k"),
    "resnet33ts": _entry(Layout(_stages(_D33, _W33), **_TS33), "ra2_in1k"),
    "seresnet33ts": _entry(Layout(_stages(_D33, _W33), attention="se", **_TS33), "ra2_in1k"),
    "eca_resnet33ts": _entry(Layout(_stages(_D33, _W33), attention="eca", **_TS33), "ra2_in1k"),
    "gcresnet33ts": _entry(Layout(_stages(_D33, _W33), attention="gc", **_TS33), "ra2_in1k"),
    "gcresnet50t": _entry(Layout(_stages(_D50, _W26), attention="gc"), "ra2_in1k"),
    "seresnext26ts": _entry(Layout(_stages(_D26, _W26, 32), attention="se", **_NEXT), "ch_in1k"),
    "eca_resnext26ts": _entry(Layout(_stages(_D26, _W26, 32), attention="eca", **_NEXT), "ch_in1k"),
    "gcresnext26ts": _entry(Layout(_stages(_D26, _W26, 32), attention="gc", **_NEXT), "ch_in1k"),
    "gcresnext50ts": _entry(Layout(_stages(_D50, _W26, 32), attention="gc", **_NEXT), "ch_in1k"),
    "botnet26t_256": _entry(
        Layout(_stages(_D26, _W26, kinds=_ATTN26), self_attention=_BOT, fixed_size=True, **_POOL),
        "c1_in1k",
        crop=0.95,
    ),
    "sebotnet33ts_256": _entry(
        Layout(
            _stages(_D33, _W33SA, kinds=_ATTN33, last_ratio=0.333),
            attention="se",
            self_attention=_BOT,
            fixed_size=True,
            **_TS33,
        ),
        "a1h_in1k",
        crop=0.94,
    ),
    "eca_botnext26ts_256": _entry(
        Layout(
            _stages(_D26, _W26, 16, kinds=_ATTN26),
            attention="eca",
            self_attention=("bottleneck", {"key_dim": 16}),
            fixed_size=True,
            **_NEXT,
        ),
        "c1_in1k",
        crop=0.95,
    ),
    "halonet26t": _entry(
        Layout(
            _stages(_D26, _W26, kinds=_ATTN26),
            self_attention=("halo", {"block_size": 8, "halo_size": 2}),
            **_POOL,
        ),
        "a1h_in1k",
        crop=0.95,
    ),
    "sehalonet33ts": _entry(
        Layout(
            _stages(_D33, _W33SA, kinds=_ATTN33, last_ratio=0.333),
            attention="se",
            self_attention=_HALO,
            **_TS33,
        ),
        "ra2_in1k",
        crop=0.94,
    ),
    "eca_halonext26ts": _entry(
        Layout(
            _stages(_D26, _W26, 16, kinds=_ATTN26),
            attention="eca",
            self_attention=("halo", {"block_size": 8, "halo_size": 2, "key_dim": 16}),
            **_NEXT,
        ),
        "c1_in1k",
        crop=0.94,
    ),
    "halonet50ts": _entry(
        Layout(_halonet50ts_stages(), self_attention=_HALO, **_NEXT), "a1h_in1k", crop=0.94
    ),
    "halo2botnet50ts_256": _entry(
        Layout(_halo2bot_stages(), fixed_size=True, **_SILU), "a1h_in1k", crop=0.95
    ),
    "lambda_resnet26t": _entry(
        Layout(_stages(_D26, _W26, kinds=_ATTN26), self_attention=_LAMBDA, **_POOL),
        "c1_in1k",
        crop=0.94,
    ),
    "lambda_resnet50ts": _entry(
        Layout(_stages(_D50, _W26, kinds=_ATTN50), self_attention=_LAMBDA, **_NEXT),
        "a1h_in1k",
        crop=0.95,
    ),
    "lambda_resnet26rpt_256": _entry(
        Layout(
            _stages(_D26, _W26, kinds=_ATTN26),
            self_attention=("lambda", {"context_size": None}),
            fixed_size=True,
            **_POOL,
        ),
        "c1_in1k",
        crop=0.94,
    ),
}

# Our composite layers: timm's submodule path (or parameter) -> our sublayer
# attribute (or variable); see `assign`.
SUBLAYERS = {
    **CHANNEL_ATTENTION_SUBLAYERS,
    layers.BottleneckSelfAttention: {
        "qkv": "qkv",
        "pos_embed.height_rel": "height_rel",
        "pos_embed.width_rel": "width_rel",
    },
    layers.HaloAttention: {
        "q": "query",
        "kv": "key_value",
        "pos_embed.height_rel": "height_rel",
        "pos_embed.width_rel": "width_rel",
    },
    layers.LambdaLayer: lambda layer: {
        "qkv": "qkv",
        "norm_q": "norm_q",
        "norm_v": "norm_v",
        **(
            {"pos_emb": "position_embedding"}
            if layer.context_size is None
            else {"conv_lambda": "position_conv"}
        ),
    },
}
