"""A spatial transformer in front of a small CNN classifier (the STN paper's MNIST setup)."""

import keras

from keras_attention.layers import SpatialTransformer
from keras_attention.models import _common
from keras_attention.models.conv import Conv2D


def SpatialTransformerClassifier(
    input_shape=(28, 28, 1), classes=10, localization=None, output_size=None, transformer=True
):
    """Builds a classifier that first warps its input with a spatial transformer.

    Reference: Jaderberg, Simonyan, Zisserman and Kavukcuoglu, "Spatial
    Transformer Networks", NeurIPS 2015 (https://arxiv.org/abs/1506.02025).

    `SpatialTransformer` (identity at initialisation) resamples the image, then
    three 3x3 conv + ReLU blocks (32, 64, 128 filters; 2x2 max-pooling after
    the first two), global average pooling, dropout 0.3 and a float32
    `Dense(classes)` give the logits. The pooling makes any input or output
    size work. `model.get_layer("spatial_transformer")` returns the transformer,
    e.g. to show the warped digits with `return_attention=True`.

    Args:
        input_shape: tuple, the image shape in the global image data format;
            height and width may be None. Defaults to `(28, 28, 1)`.
        classes: int, the number of classes. Defaults to 10.
        localization: None (the transformer's default localisation network) or
            a Keras layer or model mapping the images to a feature vector;
            it is saved with the model.
        output_size: None (the input's size) or `(height, width)` of the
            warped image that the classifier sees.
        transformer: bool. False builds the same CNN without the transformer,
            named "plain_cnn": the baseline that shows what the transformer
            adds. Defaults to True.

    Returns:
        A functional `keras.Model` named "stn_classifier" (or "plain_cnn"), of registered
        layers only, returning float32 logits.

    Example:

    >>> model = SpatialTransformerClassifier(output_size=(20, 20))
    >>> model.output.shape
    (None, 10)
    """
    _common.check_classes(classes)
    if not transformer and (localization is not None or output_size is not None):
        raise ValueError(
            "`localization` and `output_size` configure the transformer; pass neither with "
            f"transformer=False. Received: localization={localization!r}, "
            f"output_size={output_size!r}"
        )
    inputs = _common.image_input(input_shape)
    x = inputs
    if transformer:
        x = SpatialTransformer(
            localization=localization, output_size=output_size, name="spatial_transformer"
        )(x)
    for i, filters in enumerate((32, 64, 128)):
        x = Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    outputs = keras.layers.Dense(classes, dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="stn_classifier" if transformer else "plain_cnn")
