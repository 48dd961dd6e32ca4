"""ResNet v1 with an optional attention layer in every residual block (SE-ResNet style)."""

import keras

from keras_attention.models import _common

# depth -> (block kind, blocks per stage)
_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


def _conv_bn(x, filters, kernel_size, strides, name, relu=True):
    """Conv (no bias: BN follows) + BN [+ ReLU], padded like PyTorch (k // 2 each side)."""
    padding = "same"
    if strides > 1 and kernel_size > 1:
        # "same" would pad 0 before and 1 after an even input; pad both sides instead.
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=f"{name}_conv"
    )(x)
    x = _common.batch_norm(x, f"{name}_bn")
    return keras.layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def _block(x, kind, filters, strides, attention, name):
    """One residual block; the attention layer rescales the residual branch before the sum."""
    in_channels = x.shape[_common.channel_axis()]
    if kind == "basic":
        out_channels = filters
        y = _conv_bn(x, filters, 3, strides, f"{name}_1")
        y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    else:  # bottleneck v1.5: the stride sits on the 3x3 conv
        out_channels = 4 * filters
        y = _conv_bn(x, filters, 1, 1, f"{name}_1")
        y = _conv_bn(y, filters, 3, strides, f"{name}_2")
        y = _conv_bn(y, out_channels, 1, 1, f"{name}_3", relu=False)
    layer = attention(f"{name}_attention")
    if layer is not None:
        y = layer(y)
    shortcut = x
    if strides != 1 or in_channels != out_channels:
        shortcut = _conv_bn(x, out_channels, 1, strides, f"{name}_0", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def _resnet(depth, attention, input_shape, classes, include_top, pooling):
    _common.check_pooling(pooling)
    if include_top:
        _common.check_classes(classes)
    spec = _common.Attention(attention)
    kind, stages = _DEPTHS[depth]
    inputs = _common.image_input(input_shape)
    x = _conv_bn(inputs, 64, 7, 2, "conv1")
    # Zero padding equals PyTorch's -inf padding here: the inputs are ReLU outputs.
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, blocks in enumerate(stages):
        filters = 64 * 2**stage
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _block(x, kind, filters, strides, spec, f"conv{stage + 2}_block{block + 1}")
    outputs = _common.classifier_top(x, include_top, pooling, classes)
    return keras.Model(inputs, outputs, name=_common.model_name(f"resnet{depth}", spec.tag))


_DOC = """Builds a ResNet-{depth} (v1{variant}), optionally with attention in every block.

    Reference: He, Zhang, Ren and Sun, "Deep Residual Learning for Image
    Recognition", CVPR 2016 (https://arxiv.org/abs/1512.03385).

    {blocks}
    No convolution has a bias (BatchNormalization follows each one) and the
    padding is symmetric, as in torchvision; with 1000 classes the model has
    {params:,} trainable parameters, torchvision's count.

    The attention layer sits on the residual branch, after its last
    BatchNormalization and before the addition (the SE-ResNet placement of Hu
    et al., CVPR 2018); e.g. `attention="se"` gives SE-ResNet-{depth}, `"eca"`
    ECA-ResNet and `"cbam"` CBAM-ResNet. The model is named e.g.
    `"se_resnet{depth}"`. No pretrained weights are provided.

    Args:
        attention: None or "none"; a short name from
            `keras_attention.available()`; a layer class (built with its
            defaults); or a callable taking no argument that returns a new
            layer on each call (e.g. `lambda: SqueezeExcitation(reduction=8)`).
        input_shape: tuple, the image shape in the global image data format;
            height and width may be None. Defaults to `(224, 224, 3)`.
        classes: int, the number of classes when `include_top`. Defaults to 1000.
        include_top: bool, whether to end with global average pooling and a
            float32 `Dense(classes)` returning logits. Defaults to True.
        pooling: None, "avg" or "max": the pooling of a headless model
            (`include_top=False`); None returns the last feature map (stride
            32, {channels} channels).

    Returns:
        A functional `keras.Model` made of registered layers only.

    Example:

    >>> model = ResNet{depth}(attention="se", input_shape=(32, 32, 3), classes=10)
    >>> model.name
    'se_resnet{depth}'
    """

_BASIC = "Basic blocks (two 3x3 convolutions)."
_BOTTLENECK = (
    "Bottleneck blocks (1x1, 3x3, 1x1 convolutions) with the stride on the 3x3\n"
    '    convolution ("v1.5", as torchvision; the paper strides the first 1x1).'
)


def ResNet18(
    attention=None, input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None
):
    return _resnet(18, attention, input_shape, classes, include_top, pooling)


def ResNet34(
    attention=None, input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None
):
    return _resnet(34, attention, input_shape, classes, include_top, pooling)


def ResNet50(
    attention=None, input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None
):
    return _resnet(50, attention, input_shape, classes, include_top, pooling)


def ResNet101(
    attention=None, input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None
):
    return _resnet(101, attention, input_shape, classes, include_top, pooling)


ResNet18.__doc__ = _DOC.format(depth=18, variant="", blocks=_BASIC, params=11_689_512, channels=512)
ResNet34.__doc__ = _DOC.format(depth=34, variant="", blocks=_BASIC, params=21_797_672, channels=512)
ResNet50.__doc__ = _DOC.format(
    depth=50, variant=".5", blocks=_BOTTLENECK, params=25_557_032, channels=2048
)
ResNet101.__doc__ = _DOC.format(
    depth=101, variant=".5", blocks=_BOTTLENECK, params=44_549_160, channels=2048
)
