"""The spatial-transformer classifier: shapes, sizes, a custom localisation net,
`.keras` round trips and mixed precision."""

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy
from model_checks import assert_keras_round_trip
from model_checks import random_images

from keras_attention import layers
from keras_attention import models


def test_default_model():
    model = models.SpatialTransformerClassifier()
    assert model.name == "stn_classifier" and model.output.shape == (None, 10)
    stn = model.get_layer("spatial_transformer")
    assert isinstance(stn, layers.SpatialTransformer)
    assert stn.input is model.input  # the transformer sees the raw image


def test_output_size_sets_what_the_classifier_sees():
    model = models.SpatialTransformerClassifier(output_size=(20, 16), classes=3)
    assert model.get_layer("spatial_transformer").output.shape == (None, 20, 16, 1)
    assert model(random_images((2, 28, 28, 1))).shape == (2, 3)


def test_dynamic_spatial_size():
    model = models.SpatialTransformerClassifier(input_shape=(None, None, 1))
    for shape in ((2, 28, 28, 1), (1, 36, 20, 1)):
        assert model.predict(random_images(shape), verbose=0).shape == (shape[0], 10)


def small_localization():
    return keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, strides=2),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8),
        ]
    )


@pytest.mark.parametrize("localization", [None, small_localization], ids=["default", "custom"])
def test_keras_round_trip(localization, tmp_path):
    model = models.SpatialTransformerClassifier(
        localization=localization() if localization else None, output_size=(24, 24)
    )
    model(random_images((1, 28, 28, 1)))
    randomize_weights(model)  # a non-identity warp, so the sampler matters
    assert_keras_round_trip(model, random_images((2, 28, 28, 1)), tmp_path)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="classes"):
        models.SpatialTransformerClassifier(classes=0)
    with pytest.raises(ValueError, match="localization"):
        models.SpatialTransformerClassifier(localization="conv")


def test_mixed_bfloat16_gives_float32_logits():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = models.SpatialTransformerClassifier()
    logits = model(random_images((2, 28, 28, 1)), training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert np.isfinite(to_numpy(logits)).all()


def test_plain_cnn_is_the_same_network_without_the_transformer():
    stn = models.SpatialTransformerClassifier(input_shape=(28, 28, 1))
    plain = models.SpatialTransformerClassifier(input_shape=(28, 28, 1), transformer=False)
    assert plain.name == "plain_cnn"
    assert "spatial_transformer" not in [layer.name for layer in plain.layers]
    transformer_params = stn.get_layer("spatial_transformer").count_params()
    assert stn.count_params() - plain.count_params() == transformer_params
    assert plain(random_images((2, 28, 28, 1))).shape == (2, 10)


@pytest.mark.parametrize("kwargs", [{"output_size": (20, 20)}, {"localization": "cnn"}])
def test_transformer_arguments_need_the_transformer(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        models.SpatialTransformerClassifier(transformer=False, **kwargs)
