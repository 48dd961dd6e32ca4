"""DANet and CCNet semantic segmentation models: a backbone, an attention head, logits."""

import keras

from keras_attention.layers import CrissCrossAttention
from keras_attention.layers import DualAttention
from keras_attention.models import _common
from keras_attention.models import published_segmentation as published
from keras_attention.models.conv import Conv2D
from keras_attention.models.resize import ResizeLike


def _conv_bn_relu(x, filters, name, strides=1, dilation_rate=1):
    names = (f"{name}_conv", f"{name}_bn", f"{name}_relu")
    return _common.conv_bn_act(x, filters, names, strides=strides, dilation_rate=dilation_rate)


def _small_backbone(input_shape):
    """Three stride-2 3x3 convs, then two dilated ones: output stride 8, 128 channels.

    A stand-in for the papers' dilated ResNets that trains in minutes on a
    CPU; dilation widens the receptive field without lowering the resolution.
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, filters in enumerate((32, 64, 128)):
        x = _conv_bn_relu(x, filters, f"down{i + 1}", strides=2)
    for i, rate in enumerate((2, 4)):
        x = _conv_bn_relu(x, 128, f"dilated{i + 1}", dilation_rate=rate)
    return keras.Model(inputs, x, name="small_dilated_backbone")


def _check_timm_only(backbone, **arguments):
    """ValueError for a timm-backbone argument set with a Keras model (or None) as backbone.

    `arguments`: {name: (value, default)}.
    """
    for argument, (value, default) in arguments.items():
        if value != default:
            raise ValueError(
                f"`{argument}` applies to a timm backbone (a `from_timm` name), not to "
                f"backbone={backbone!r}. Received: {argument}={value!r}"
            )


def _features(inputs, input_shape, backbone):
    """The backbone's feature map of `inputs`, checked to be 4-D with known channels."""
    if backbone is None:
        backbone = _small_backbone(input_shape)
    elif not isinstance(backbone, keras.Model):
        raise ValueError(
            "`backbone` must be None, a `from_timm` name or a keras.Model mapping images to a 4-D "
            f"feature map. Received: backbone={backbone!r}"
        )
    features = backbone(inputs)
    if len(features.shape) != 4 or features.shape[_common.channel_axis()] is None:
        raise ValueError(
            "`backbone` must map images to one 4-D feature map with a known "
            f"channel count. Received a backbone whose output is {features!r}"
        )
    return features


def _classify(x, inputs, classes):
    """Dropout, 1x1 conv to `classes`, and float32 bilinear resizing to the input size."""
    x = keras.layers.Dropout(0.1, name="head_dropout")(x)
    logits = Conv2D(classes, 1, name="classifier")(x)
    return ResizeLike(dtype="float32", name="logits")([logits, inputs])


def DANet(
    classes,
    input_shape=(None, None, 3),
    backbone=None,
    output_stride=8,
    pretrained=True,
    checkpoint=None,
    outputs="sum",
    backbone_dilation="timm",
):
    """Builds a DANet: a backbone, the dual attention head and per-pixel logits.

    Reference: Fu, Liu, Tian, Li, Bao, Fang and Lu, "Dual Attention Network for
    Scene Segmentation", CVPR 2019 (https://arxiv.org/abs/1809.02983).

    With a Keras model (or None) as backbone, its C-channel feature map goes
    through `DualAttention` (the position and channel attention branches, each
    reduced to C/4 channels, summed), dropout 0.1 and a 1x1 convolution to
    `classes`; the logits are resized bilinearly to the input's height and
    width (`ResizeLike`, in float32, so a mixed-precision model still returns
    float32 logits).

    With a `from_timm` name as backbone (the paper's: `"resnet101s"`, the
    deep-stem ResNet-101 of the released code, at `output_stride=8`) it builds
    the published network: `from_timm(backbone, features_only=True,
    output_stride=...)`'s last map and the released `DANetHead`
    (junfu1115/DANet, `encoding/models/sseg/danet.py`), its layers named after
    the released modules: `head_conv5a` (3x3 conv to C/4 + BN + ReLU),
    `head_sa` (`PositionAttention`), `head_conv51` (3x3 + BN + ReLU); the same
    with `head_conv5c`, `head_sc` (`ChannelAttention`), `head_conv52`; then
    per output a channel dropout 0.1 (`Dropout2d`) and a 1x1 conv with a bias:
    `head_conv8` on the sum of the branches, `head_conv6` on the position
    branch alone, `head_conv7` on the channel branch alone. With 19 classes and
    `outputs="all"` its parameters are the released model's: 66,578,555
    trainable, 109,824 BatchNormalization statistics. The released code
    upsamples with `align_corners=True`; `ResizeLike` uses half-pixel centres.

    Args:
        classes: int, the number of classes (per-pixel logits, no softmax).
        input_shape: tuple, the image shape in the global image data format;
            height and width may be None. Defaults to `(None, None, 3)`.
        backbone: None, for a small dilated convolutional backbone of output
            stride 8 and 128 channels (quick to train on a CPU), or a
            `keras.Model` mapping images to a feature map (the paper uses a
            dilated ResNet of output stride 8). It is stored in the model. Or a
            `from_timm` name (ResNet family or RegNetY; "resnet101s" for the
            paper's network), for the published network (above).
        output_stride: 8, 16 or 32: `from_timm`'s `output_stride` of a named
            backbone. Defaults to 8 (the paper's).
        pretrained: with a named backbone, whether to load timm's ImageNet
            weights into it (`from_timm`'s `pretrained`). Defaults to True.
        checkpoint: with a named backbone, `from_timm`'s `checkpoint` (None
            downloads timm's; or a local file or state dict).
        outputs: with a named backbone, the logits the model returns: "sum"
            (the default: one tensor, the released model's first output),
            "position" or "channel" (the released auxiliary logits of one
            branch), a tuple of them (a list of tensors, in that order), or
            "all" (`("sum", "position", "channel")`, the released order).
        backbone_dilation: with a named backbone, "timm" (the default: the
            first block of a dilated stage keeps the previous stage's
            dilation, as timm and DANet's released ResNet do) or "released"
            (CCNet's released ResNet: see `CCNet`).

    Returns:
        A functional `keras.Model` named "danet", of registered layers only,
        whose output has shape `(batch, H, W, classes)` for any H, W (a list
        of them for several `outputs`). A named backbone takes RGB images in
        [0, 1] (`from_timm`'s preprocessing).

    Example:

    >>> model = DANet(classes=3)
    >>> model(keras.ops.ones((1, 40, 56, 3))).shape
    (1, 40, 56, 3)
    >>> published = DANet(classes=19, backbone="resnet101s", outputs="all")  # doctest: +SKIP
    """
    _common.check_classes(classes)
    if isinstance(backbone, str):
        return published.danet(
            classes,
            input_shape,
            backbone,
            output_stride,
            pretrained,
            checkpoint,
            outputs,
            backbone_dilation,
        )
    _check_timm_only(
        backbone,
        output_stride=(output_stride, 8),
        checkpoint=(checkpoint, None),
        outputs=(outputs, "sum"),
        backbone_dilation=(backbone_dilation, "timm"),
    )
    inputs = _common.image_input(input_shape)
    features = _features(inputs, input_shape, backbone)
    channels = features.shape[_common.channel_axis()]
    x = DualAttention(filters=max(1, channels // 4), name="dual_attention")(features)
    return keras.Model(inputs, _classify(x, inputs, classes), name="danet")


def CCNet(
    classes,
    input_shape=(None, None, 3),
    backbone=None,
    recurrence=2,
    output_stride=8,
    pretrained=True,
    checkpoint=None,
    outputs="main",
    backbone_dilation="released",
):
    """Builds a CCNet: a backbone, the recurrent criss-cross attention head, logits.

    Reference: Huang, Wang, Huang, Huang, Wei and Liu, "CCNet: Criss-Cross
    Attention for Semantic Segmentation", ICCV 2019
    (https://arxiv.org/abs/1811.11721).

    With a Keras model (or None) as backbone, the RCCA head: a 3x3
    convolution to C/4 channels + BN + ReLU, `CrissCrossAttention` applied
    `recurrence` times, a 3x3 convolution + BN + ReLU, concatenation with the
    backbone's C-channel features, and a 3x3 bottleneck convolution to C/4 +
    BN + ReLU; then dropout 0.1, a 1x1 convolution to `classes`, and bilinear
    resizing to the input's height and width in float32 (`ResizeLike`).

    With a `from_timm` name as backbone (the paper's: `"resnet101s"`, a
    deep-stem ResNet-101, at `output_stride=8`) it builds the published
    network of the released code (speedinghzl/CCNet, `networks/ccnet.py`),
    its layers named after the released modules: the `RCCAModule` on the last
    map (`head_conva`: 3x3 conv to C/4 + BN; `head_cca`: criss-cross
    attention, `recurrence` times; `head_convb`: 3x3 conv + BN;
    `head_concat`: the backbone's map, then that; `head_bottleneck`: 3x3 conv
    to 512 + BN, channel dropout 0.1, 1x1 conv with a bias to `classes`) and
    the auxiliary head `dsn` on the third stage's map (3x3 conv to 512 with a
    bias + BN, channel dropout 0.1, 1x1 conv). Each BN is followed by a leaky
    ReLU of slope 0.01: the released code's `InPlaceABNSync` (its default
    activation). With 19 classes and `outputs="all"` its parameters are the
    released model's: 71,287,911 trainable, 109,824 BatchNormalization
    statistics. The released model returns 1/8-resolution logits; these are
    resized to the input (half-pixel centres).

    Args:
        classes: int, the number of classes (per-pixel logits, no softmax).
        input_shape: tuple, the image shape in the global image data format;
            height and width may be None. Defaults to `(None, None, 3)`.
        backbone: None, for a small dilated convolutional backbone of output
            stride 8 and 128 channels, or a `keras.Model` mapping images to a
            feature map (the paper uses a dilated ResNet of output stride 8).
            Or a `from_timm` name (ResNet family or RegNetY; "resnet101s" for
            the paper's network), for the published network (above).
        recurrence: int, the passes of criss-cross attention, which share
            their weights; 2 connects every pixel to every other. Defaults to 2.
        output_stride: 8, 16 or 32: `from_timm`'s `output_stride` of a named
            backbone. Defaults to 8 (the paper's).
        pretrained: with a named backbone, whether to load timm's ImageNet
            weights into it (`from_timm`'s `pretrained`). Defaults to True.
        checkpoint: with a named backbone, `from_timm`'s `checkpoint` (None
            downloads timm's; or a local file or state dict).
        outputs: with a named backbone, the logits the model returns: "main"
            (the default: one tensor), "aux" (the `dsn` head's), a tuple of
            them (a list of tensors, in that order), or "all" (`("main",
            "aux")`, the released order).
        backbone_dilation: with a named backbone (of timm's ResNet family),
            "released" (the default: the released ResNet, in which every
            block of a dilated stage has the stage's dilation, 2 in layer3 and
            4 in layer4 at stride 8, and the stem's max pool runs in ceil
            mode) or "timm" (timm's: the first block of a dilated stage keeps
            the previous stage's dilation; floor-mode pool). Same weights.

    Returns:
        A functional `keras.Model` named "ccnet", of registered layers only,
        whose output has shape `(batch, H, W, classes)` for any H, W (a list
        of them for several `outputs`). A named backbone takes RGB images in
        [0, 1] (`from_timm`'s preprocessing).

    Example:

    >>> model = CCNet(classes=3, recurrence=2)
    >>> model(keras.ops.ones((1, 40, 56, 3))).shape
    (1, 40, 56, 3)
    >>> published = CCNet(classes=19, backbone="resnet101s", outputs="all")  # doctest: +SKIP
    """
    _common.check_classes(classes)
    if isinstance(backbone, str):
        return published.ccnet(
            classes,
            input_shape,
            backbone,
            output_stride,
            pretrained,
            checkpoint,
            outputs,
            backbone_dilation,
            recurrence,
        )
    _check_timm_only(
        backbone,
        output_stride=(output_stride, 8),
        checkpoint=(checkpoint, None),
        outputs=(outputs, "main"),
        backbone_dilation=(backbone_dilation, "released"),
    )
    attention = CrissCrossAttention(recurrence=recurrence, name="criss_cross")
    inputs = _common.image_input(input_shape)
    features = _features(inputs, input_shape, backbone)
    inner = max(1, features.shape[_common.channel_axis()] // 4)
    x = _conv_bn_relu(features, inner, "rcca_reduce")
    x = attention(x)
    x = _conv_bn_relu(x, inner, "rcca_out")
    x = keras.layers.Concatenate(axis=_common.channel_axis(), name="rcca_concat")([features, x])
    x = _conv_bn_relu(x, inner, "bottleneck")
    return keras.Model(inputs, _classify(x, inputs, classes), name="ccnet")
