"""DANet and CCNet semantic segmentation models: a backbone, an attention head, logits."""

import keras

from keras_attention.layers import CrissCrossAttention
from keras_attention.layers import DualAttention
from keras_attention.models import _common
from keras_attention.models.resize import ResizeLike


def _conv_bn_relu(x, filters, name, strides=1, dilation_rate=1):
    x = keras.layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = _common.batch_norm(x, f"{name}_bn")
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


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


def _features(inputs, input_shape, backbone):
    """The backbone's feature map of `inputs`, checked to be 4-D with known channels."""
    if backbone is None:
        backbone = _small_backbone(input_shape)
    elif not isinstance(backbone, keras.Model):
        raise ValueError(
            "`backbone` must be None or a keras.Model mapping images to a 4-D "
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
    logits = keras.layers.Conv2D(classes, 1, name="classifier")(x)
    return ResizeLike(dtype="float32", name="logits")([logits, inputs])


def DANet(classes, input_shape=(None, None, 3), backbone=None):
    """Builds a DANet: a backbone, the dual attention head and per-pixel logits.

    Reference: Fu, Liu, Tian, Li, Bao, Fang and Lu, "Dual Attention Network for
    Scene Segmentation", CVPR 2019 (https://arxiv.org/abs/1809.02983).

    The backbone's C-channel feature map goes through `DualAttention` (the
    position and channel attention branches, each reduced to C/4 channels,
    summed), dropout 0.1 and a 1x1 convolution to `classes`; the logits are
    resized bilinearly to the input's height and width (`ResizeLike`, in
    float32, so a mixed-precision model still returns float32 logits). The
    paper's auxiliary per-branch outputs are left out.

    Args:
        classes: int, the number of classes (per-pixel logits, no softmax).
        input_shape: tuple, the image shape in the global image data format;
            height and width may be None. Defaults to `(None, None, 3)`.
        backbone: None, for a small dilated convolutional backbone of output
            stride 8 and 128 channels (quick to train on a CPU), or a
            `keras.Model` mapping images to a feature map (the paper uses a
            dilated ResNet of output stride 8). It is stored in the model.

    Returns:
        A functional `keras.Model` named "danet", of registered layers only,
        whose output has shape `(batch, H, W, classes)` for any H, W.

    Example:

    >>> model = DANet(classes=3)
    >>> model(keras.ops.ones((1, 40, 56, 3))).shape
    (1, 40, 56, 3)
    """
    _common.check_classes(classes)
    inputs = _common.image_input(input_shape)
    features = _features(inputs, input_shape, backbone)
    channels = features.shape[_common.channel_axis()]
    x = DualAttention(filters=max(1, channels // 4), name="dual_attention")(features)
    return keras.Model(inputs, _classify(x, inputs, classes), name="danet")


def CCNet(classes, input_shape=(None, None, 3), backbone=None, recurrence=2):
    """Builds a CCNet: a backbone, the recurrent criss-cross attention head, logits.

    Reference: Huang, Wang, Huang, Huang, Wei and Liu, "CCNet: Criss-Cross
    Attention for Semantic Segmentation", ICCV 2019
    (https://arxiv.org/abs/1811.11721).

    The RCCA head: a 3x3 convolution to C/4 channels + BN + ReLU,
    `CrissCrossAttention` applied `recurrence` times, a 3x3 convolution +
    BN + ReLU, concatenation with the backbone's C-channel features, and a
    3x3 bottleneck convolution to C/4 + BN + ReLU; then dropout 0.1, a 1x1
    convolution to `classes`, and bilinear resizing to the input's height and
    width in float32 (`ResizeLike`).

    Args:
        classes: int, the number of classes (per-pixel logits, no softmax).
        input_shape: tuple, the image shape in the global image data format;
            height and width may be None. Defaults to `(None, None, 3)`.
        backbone: None, for a small dilated convolutional backbone of output
            stride 8 and 128 channels, or a `keras.Model` mapping images to a
            feature map (the paper uses a dilated ResNet of output stride 8).
        recurrence: int, the passes of criss-cross attention, which share
            their weights; 2 connects every pixel to every other. Defaults to 2.

    Returns:
        A functional `keras.Model` named "ccnet", of registered layers only,
        whose output has shape `(batch, H, W, classes)` for any H, W.

    Example:

    >>> model = CCNet(classes=3, recurrence=2)
    >>> model(keras.ops.ones((1, 40, 56, 3))).shape
    (1, 40, 56, 3)
    """
    _common.check_classes(classes)
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
