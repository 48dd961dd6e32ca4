"""DANet and CCNet as published: a timm dilated ResNet and the heads of the released code.

The heads are built layer by layer after the released PyTorch modules, and
their layers are named after those modules' paths ("." -> "_"): junfu1115/DANet
`encoding/models/sseg/danet.py` (`DANetHead`: `head.conv5a` ... `head.conv8`) and
speedinghzl/CCNet `networks/ccnet.py` (`RCCAModule`: `head.conva` ...
`head.bottleneck`; the auxiliary `dsn`). The backbone is `from_timm(name,
features_only=True, output_stride=...)`, nested in the model under timm's name.
"""

import re

import keras

from keras_attention.layers import ChannelAttention
from keras_attention.layers import CrissCrossAttention
from keras_attention.layers import PositionAttention
from keras_attention.models import _common
from keras_attention.models.conv import Conv2D
from keras_attention.models.resize import ResizeLike
from keras_attention.models.timm import from_timm

BACKBONE_DILATIONS = ("timm", "released")
DANET_OUTPUTS = ("sum", "position", "channel")
CCNET_OUTPUTS = ("main", "aux")
# The output layers' names ("logits" is the main one, as in the small-backbone models).
OUTPUT_NAMES = {
    "sum": "logits",
    "position": "position_logits",
    "channel": "channel_logits",
    "main": "logits",
    "aux": "aux_logits",
}
# CCNet's RCCAModule(2048, 512, classes) and its dsn: 512 channels, fixed in the code.
CCNET_WIDTH = 512


def check_outputs(outputs, allowed):
    """The tuple of output names `outputs` asks for ("all" = every one), or a ValueError."""
    if outputs == "all":
        return allowed
    names = (outputs,) if isinstance(outputs, str) else outputs
    if (
        not isinstance(names, (list, tuple))
        or not names
        or any(name not in allowed for name in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(
            f"`outputs` must be 'all', one of {allowed} or a tuple of distinct ones. "
            f"Received: outputs={outputs!r}"
        )
    return tuple(names)


def check_backbone_dilation(backbone_dilation):
    if backbone_dilation not in BACKBONE_DILATIONS:
        raise ValueError(
            f"`backbone_dilation` must be one of {BACKBONE_DILATIONS}. "
            f"Received: backbone_dilation={backbone_dilation!r}"
        )


def timm_backbone(name, input_shape, output_stride, out_indices, pretrained, checkpoint, dilation):
    """`from_timm(name, features_only=True, ...)`, optionally with the released dilation.

    `dilation="released"` rebuilds it as CCNet's released ResNet: see
    `released_dilation`.
    """
    check_backbone_dilation(dilation)
    model = from_timm(
        name,
        checkpoint=checkpoint,
        pretrained=pretrained,
        input_shape=input_shape,
        features_only=True,
        out_indices=out_indices,
        output_stride=output_stride,
    )
    return released_dilation(model, name) if dilation == "released" else model


def released_dilation(model, name):
    """The backbone of CCNet's released code: timm's ResNet with two details changed.

    1. Every block of a dilated stage has the stage's dilation (the released
       `_make_layer` passes `dilation` to the first block too); timm's first
       block keeps the previous stage's (1 in layer3, 2 in layer4 at stride 8).
    2. The stem's 3x3 max pool runs in ceil mode (`MaxPool2d(3, 2, padding=1,
       ceil_mode=True)`): one more zero row and column after the end (the input
       is a ReLU output, so zeros pad as PyTorch's -inf), which gives ceil's
       size for even sides and floor's (the same) for odd ones.

    The weights' shapes do not change: the rebuilt model takes `model`'s weights.
    """
    convs = {layer.name: layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
    names = {layer.name for layer in model.layers}
    if "maxpool_pad" not in names:
        raise ValueError(
            "backbone_dilation='released' reproduces a ResNet with a max-pooled stem "
            f"(timm's ResNet family); {name!r} has none. Use backbone_dilation='timm'. "
            f"Received: backbone={name!r}"
        )
    overrides = {"maxpool_pad": {"padding": ((1, 2), (1, 2))}}
    for conv_name, conv in convs.items():
        match = re.fullmatch(r"(layer\d+)_0_(conv\d)", conv_name)
        follower = convs.get(f"{match.group(1)}_1_{match.group(2)}") if match else None
        if follower is None or tuple(conv.strides) != (1, 1):
            continue
        rate = tuple(follower.dilation_rate)
        if rate != tuple(conv.dilation_rate):
            kernel = conv.kernel_size[0]
            overrides[conv_name] = {"dilation_rate": rate}
            overrides[f"{conv_name}_pad"] = {"padding": rate[0] * (kernel - 1) // 2}

    def clone(layer):
        config = layer.get_config()
        config.update(overrides.get(layer.name, {}))
        return layer.__class__.from_config(config)

    rebuilt = keras.models.clone_model(model, clone_function=clone)
    for layer in rebuilt.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return rebuilt


def _conv_bn_act(x, filters, name, activation="relu", use_bias=False):
    """A released `Sequential(Conv2d(3x3), norm[, activation])`: layers "<name>_0", "_1"."""
    # InPlaceABNSync's activation is a part of the norm ("_1_act"); ReLU is a module ("_2").
    act_name = f"{name}_1_act" if activation == "leaky_relu" else f"{name}_2"
    names = (f"{name}_0", f"{name}_1", act_name)
    return _common.conv_bn_act(x, filters, names, activation, use_bias=use_bias)


def _classifier(x, inputs, classes, name, output, index=0):
    """`Dropout2d(0.1)` ("<name>_<index>"), the 1x1 conv with a bias ("<name>_<index+1>"),
    and bilinear resizing to the input size in float32 (the layer named `output`)."""
    x = keras.layers.SpatialDropout2D(0.1, name=f"{name}_{index}")(x)
    logits = Conv2D(classes, 1, name=f"{name}_{index + 1}")(x)
    return ResizeLike(dtype="float32", name=OUTPUT_NAMES[output])([logits, inputs])


def _model(inputs, logits, outputs, name):
    picked = [logits[output] for output in outputs]
    return keras.Model(inputs, picked[0] if len(picked) == 1 else picked, name=name)


def danet(
    classes,
    input_shape,
    backbone,
    output_stride,
    pretrained,
    checkpoint,
    outputs,
    backbone_dilation,
):
    """DANet on `from_timm(backbone)`: see `segmentation.DANet`."""
    outputs = check_outputs(outputs, DANET_OUTPUTS)
    features = timm_backbone(
        backbone, input_shape, output_stride, (-1,), pretrained, checkpoint, backbone_dilation
    )
    inputs = _common.image_input(input_shape)
    (x,) = features(inputs)  # a features_only model returns a list, here of one map
    inner = x.shape[_common.channel_axis()] // 4
    position = _conv_bn_act(x, inner, "head_conv5a")
    position = PositionAttention(reduction=8, name="head_sa")(position)
    position = _conv_bn_act(position, inner, "head_conv51")
    channel = _conv_bn_act(x, inner, "head_conv5c")
    channel = ChannelAttention(name="head_sc")(channel)
    channel = _conv_bn_act(channel, inner, "head_conv52")
    logits = {}
    if "position" in outputs:
        logits["position"] = _classifier(position, inputs, classes, "head_conv6", "position")
    if "channel" in outputs:
        logits["channel"] = _classifier(channel, inputs, classes, "head_conv7", "channel")
    if "sum" in outputs:
        total = keras.layers.Add(name="head_sum")([position, channel])
        logits["sum"] = _classifier(total, inputs, classes, "head_conv8", "sum")
    return _model(inputs, logits, outputs, "danet")


def ccnet(
    classes,
    input_shape,
    backbone,
    output_stride,
    pretrained,
    checkpoint,
    outputs,
    backbone_dilation,
    recurrence,
):
    """CCNet on `from_timm(backbone)`: see `segmentation.CCNet`."""
    outputs = check_outputs(outputs, CCNET_OUTPUTS)
    attention = CrissCrossAttention(recurrence=recurrence, name="head_cca")
    features = timm_backbone(
        backbone, input_shape, output_stride, (-2, -1), pretrained, checkpoint, backbone_dilation
    )
    inputs = _common.image_input(input_shape)
    third, last = features(inputs)
    logits = {}
    if "main" in outputs:
        inner = last.shape[_common.channel_axis()] // 4
        x = _conv_bn_act(last, inner, "head_conva", "leaky_relu")
        x = attention(x)
        x = _conv_bn_act(x, inner, "head_convb", "leaky_relu")
        x = keras.layers.Concatenate(axis=_common.channel_axis(), name="head_concat")([last, x])
        x = _conv_bn_act(x, CCNET_WIDTH, "head_bottleneck", "leaky_relu")
        logits["main"] = _classifier(x, inputs, classes, "head_bottleneck", "main", index=2)
    if "aux" in outputs:
        # The released dsn's 3x3 conv has a bias (nn.Conv2d's default), the head's do not.
        x = _conv_bn_act(third, CCNET_WIDTH, "dsn", "leaky_relu", use_bias=True)
        logits["aux"] = _classifier(x, inputs, classes, "dsn", "aux", index=2)
    return _model(inputs, logits, outputs, "ccnet")
