"""Residual Attention Network (Attention-56 and Attention-92)."""

import keras

from keras_attention.layers import ResidualAttention
from keras_attention.models import _common

# Attention modules per stage; the mask branch of stage i max-pools 3 - i times,
# so that the smallest mask resolution is the same at every stage.
_MODULES = {56: (1, 1, 1), 92: (1, 2, 3)}
_MASK_DEPTHS = (3, 2, 1)
_STAGE_FILTERS = (256, 512, 1024)


def _bn_relu(x, name):
    x = _common.batch_norm(x, f"{name}_bn")
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def _unit(x, filters, strides, name):
    """A pre-activation bottleneck unit (BN-ReLU-conv, 1x1 -> 3x3 -> 1x1), as in the modules.

    The stride sits on the 3x3 convolution; a changed shape is projected by a
    strided 1x1 convolution of the pre-activated input.
    """
    inner = filters // 4
    activated = _bn_relu(x, f"{name}_1")
    y = keras.layers.Conv2D(inner, 1, use_bias=False, name=f"{name}_1_conv")(activated)
    y = _bn_relu(y, f"{name}_2")
    if strides > 1:  # pad both sides like PyTorch; "same" would pad only after
        y = keras.layers.ZeroPadding2D(1, name=f"{name}_2_pad")(y)
    y = keras.layers.Conv2D(
        inner,
        3,
        strides=strides,
        padding="valid" if strides > 1 else "same",
        use_bias=False,
        name=f"{name}_2_conv",
    )(y)
    y = _bn_relu(y, f"{name}_3")
    y = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_3_conv")(y)
    shortcut = x
    if strides > 1 or x.shape[_common.channel_axis()] != filters:
        shortcut = keras.layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, name=f"{name}_0_conv"
        )(activated)
    return keras.layers.Add(name=f"{name}_add")([shortcut, y])


def _residual_attention_net(depth, input_shape, classes, include_top, pooling, small_input):
    _common.check_pooling(pooling)
    if include_top:
        _common.check_classes(classes)
    inputs = _common.image_input(input_shape)
    if small_input:
        x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name="conv1_conv")(inputs)
        x = _bn_relu(x, "conv1")
    else:
        x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
        x = keras.layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
        x = _bn_relu(x, "conv1")
        # Zero padding equals -inf padding here: the inputs are ReLU outputs.
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (modules, mask_depth, filters) in enumerate(
        zip(_MODULES[depth], _MASK_DEPTHS, _STAGE_FILTERS)
    ):
        x = _unit(x, filters, 1 if stage == 0 else 2, f"stage{stage + 1}_unit")
        for module in range(modules):
            x = ResidualAttention(
                depth=mask_depth, p=1, t=2, r=1, name=f"stage{stage + 1}_attention{module + 1}"
            )(x)
    for i in range(3):
        x = _unit(x, 2048, 2 if i == 0 else 1, f"stage4_unit{i + 1}")
    x = _bn_relu(x, "post")  # pre-activation units leave the last sum un-normalised
    outputs = _common.classifier_top(x, include_top, pooling, classes)
    return keras.Model(inputs, outputs, name=f"residual_attention_net{depth}")


_DOC = """Builds Attention-{depth}, the Residual Attention Network of {modules} modules.

    Reference: Wang, Jiang, Qian, Yang, Li, Zhang, Wang and Tang, "Residual
    Attention Network for Image Classification", CVPR 2017
    (https://arxiv.org/abs/1704.06904).

    The ImageNet layout of the paper's Table 2: a 7x7 stride-2 convolution and
    a 3x3 stride-2 max-pool; then three stages, each a pre-activation
    bottleneck unit (256, 512, 1024 channels; stride 2 from the second stage
    on) followed by {stages} `ResidualAttention` modules (p=1, t=2, r=1;
    their mask branches max-pool 3, 2 and 1 times); three units of 2048
    channels (the first with stride 2); BN-ReLU, global average pooling and a
    float32 `Dense(classes)` returning logits. With 1000 classes the model has
    {params:,} trainable parameters (the paper: {paper}M; the modules here
    have no residual unit on the mask's skip connections, see
    `ResidualAttention`). The model is named `"residual_attention_net{depth}"`.

    Args:
        input_shape: tuple, the image shape in the global image data format;
            height and width may be None. Defaults to `(224, 224, 3)`.
        classes: int, the number of classes when `include_top`. Defaults to 1000.
        include_top: bool, whether to end with global average pooling and the
            classifier. Defaults to True.
        pooling: None, "avg" or "max": the pooling of a headless model
            (`include_top=False`); None returns the last feature map (stride
            32, or 8 with `small_input`; 2048 channels).
        small_input: bool, the CIFAR layout for 32x32 images: the stem is a
            3x3 stride-1 convolution of 64 channels and there is no max-pool.
            Defaults to False.

    Returns:
        A functional `keras.Model` made of registered layers only.

    Example:

    >>> model = ResidualAttentionNet{depth}(input_shape=(32, 32, 3), classes=10, small_input=True)
    >>> model.output.shape
    (None, 10)
    """


def ResidualAttentionNet56(
    input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, small_input=False
):
    return _residual_attention_net(56, input_shape, classes, include_top, pooling, small_input)


def ResidualAttentionNet92(
    input_shape=(224, 224, 3), classes=1000, include_top=True, pooling=None, small_input=False
):
    return _residual_attention_net(92, input_shape, classes, include_top, pooling, small_input)


ResidualAttentionNet56.__doc__ = _DOC.format(
    depth=56, modules=3, stages="1, 1 and 1", params=31_391_656, paper=31.9
)
ResidualAttentionNet92.__doc__ = _DOC.format(
    depth=92, modules=6, stages="1, 2 and 3", params=51_769_768, paper=51.3
)
