"""A compact CNN with an attention layer after each stage: the examples' fast default."""

import keras

from keras_attention.models import _common


def AttentionCNN(attention=None, input_shape=(28, 28, 1), classes=10, widths=(32, 64, 128)):
    """Builds a small conv net with one attention layer after each of its stages.

    Each stage is two `3x3 conv (no bias) -> BatchNorm -> ReLU` blocks of
    `widths[i]` filters followed by the attention layer; every stage after the
    first starts with a 2x2 max-pool. Global average pooling and a float32
    `Dense(classes)` return logits (float32 under a mixed-precision policy
    too, so the cross-entropy is computed in full precision).

    With the default widths and no attention the model has 289,066 parameters
    for 10 classes and trains on the 28x28 offline digits in seconds per epoch
    on a CPU: the quick model of the examples.

    Args:
        attention: None or "none"; a short name from
            `keras_attention.available()`; a layer class (built with its
            defaults); or a callable taking no argument that returns a new
            layer on each call.
        input_shape: tuple, the image shape in the global image data format.
            Defaults to `(28, 28, 1)`.
        classes: int, the number of classes. Defaults to 10.
        widths: sequence of ints, the filters of each stage. Defaults to
            `(32, 64, 128)`.

    Returns:
        A functional `keras.Model` from images to float32 logits, named e.g.
        `"cbam_attention_cnn"`. Its attention layers are named
        `"stage<i>_attention"`.

    Example:

    >>> model = AttentionCNN("se", input_shape=(28, 28, 1), classes=10)
    >>> model.output.shape
    (None, 10)
    """
    _common.check_classes(classes)
    spec = _common.Attention(attention)
    inputs = _common.image_input(input_shape)
    x = inputs
    for stage, filters in enumerate(widths, start=1):
        if stage > 1:
            x = keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        for block in (1, 2):
            name = f"stage{stage}_conv{block}"
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
            x = _common.batch_norm(x, f"{name}_bn")
            x = keras.layers.ReLU(name=f"{name}_relu")(x)
        layer = spec(f"stage{stage}_attention")
        if layer is not None:
            x = layer(x)
    outputs = _common.classifier_top(x, True, None, classes)
    return keras.Model(inputs, outputs, name=_common.model_name("attention_cnn", spec.tag))
