"""DANet and CCNet: input-resolution logits at any size, the heads, custom backbones,
`.keras` round trips, mixed precision, and the `ResizeLike` layer they end with."""

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy
from model_checks import assert_keras_round_trip
from model_checks import random_images

from keras_attention import layers
from keras_attention import models

BUILDERS = [pytest.param(models.DANet, id="danet"), pytest.param(models.CCNet, id="ccnet")]


@pytest.mark.parametrize("builder", BUILDERS)
def test_logits_have_the_input_resolution_at_any_size(builder):
    model = builder(classes=5)
    # 30x21 is not a multiple of the output stride 8; `predict` runs a graph.
    for shape in ((2, 32, 32, 3), (1, 30, 21, 3)):
        logits = model.predict(random_images(shape), verbose=0)
        assert logits.shape == (*shape[:3], 5)
    assert model.get_layer("small_dilated_backbone").output.shape[-1] == 128


def test_danet_head():
    model = models.DANet(classes=4)
    head = model.get_layer("dual_attention")
    assert isinstance(head, layers.DualAttention) and head.filters == 32  # C / 4
    assert model.get_layer("classifier").kernel.shape == (1, 1, 32, 4)


def test_ccnet_head():
    model = models.CCNet(classes=4, recurrence=3)
    attention = model.get_layer("criss_cross")
    assert isinstance(attention, layers.CrissCrossAttention) and attention.recurrence == 3
    assert attention.input.shape[-1] == 32  # C / 4
    assert model.get_layer("rcca_concat").output.shape[-1] == 128 + 32
    assert model.get_layer("bottleneck_conv").kernel.shape == (3, 3, 160, 32)
    with pytest.raises(ValueError, match="recurrence"):
        models.CCNet(classes=4, recurrence=0)


def test_logits_are_the_bilinearly_resized_classifier_output():
    model = models.CCNet(classes=3, input_shape=(32, 24, 3))
    x = random_images((2, 32, 24, 3))
    coarse = keras.Model(model.input, model.get_layer("classifier").output)(x, training=False)
    expected = keras.ops.image.resize(coarse, (32, 24), interpolation="bilinear")
    np.testing.assert_allclose(to_numpy(model(x, training=False)), to_numpy(expected), atol=1e-5)


@pytest.mark.parametrize("builder", BUILDERS)
def test_custom_backbone(builder):
    images = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(16, 3, strides=4, padding="same")(images)
    backbone = keras.Model(images, features, name="stride4")
    model = builder(classes=2, backbone=backbone)
    assert model.get_layer("stride4") is backbone
    assert model(random_images((1, 20, 28, 3))).shape == (1, 20, 28, 2)


@pytest.mark.parametrize("builder", BUILDERS)
def test_bad_arguments_raise(builder):
    with pytest.raises(ValueError, match="backbone"):
        builder(classes=2, backbone=keras.layers.Conv2D(8, 3))
    images = keras.Input((None, None, 3))
    flat = keras.Model(images, keras.layers.GlobalAveragePooling2D()(images))
    with pytest.raises(ValueError, match="backbone"):
        builder(classes=2, backbone=flat)
    with pytest.raises(ValueError, match="classes"):
        builder(classes=0)


@pytest.mark.parametrize("builder", BUILDERS)
def test_keras_round_trip(builder, tmp_path):
    model = builder(classes=3, input_shape=(32, 32, 3))
    randomize_weights(model)  # gamma = 0 would hide the attention weights
    assert_keras_round_trip(model, random_images((2, 32, 32, 3)), tmp_path)


@pytest.mark.parametrize("builder", BUILDERS)
def test_mixed_bfloat16_gives_float32_logits(builder):
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = builder(classes=3)
    assert model.get_layer("classifier").compute_dtype == "bfloat16"
    logits = model(random_images((1, 24, 24, 3)), training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert np.isfinite(to_numpy(logits)).all()


def test_resize_like_matches_a_hand_computed_example():
    # 2 -> 4 samples with half-pixel centres read at -0.25, 0.25, 0.75, 1.25 (clamped).
    x = np.array([0.0, 4.0], "float32").reshape(1, 2, 1, 1)
    reference = np.zeros((1, 4, 1, 1), "float32")
    y = to_numpy(models.ResizeLike()([x, reference]))
    np.testing.assert_allclose(y.ravel(), [0.0, 1.0, 3.0, 4.0], atol=1e-6)


@pytest.mark.parametrize("size", [(17, 23), (4, 5)], ids=["up", "down"])
def test_resize_like_matches_ops_image_resize(size):
    x = random_images((2, 9, 8, 3))
    y = models.ResizeLike()([x, np.zeros((1, *size, 1), "float32")])
    expected = keras.ops.image.resize(x, size, interpolation="bilinear", antialias=False)
    np.testing.assert_allclose(to_numpy(y), to_numpy(expected), atol=1e-5)


def test_resize_like_channels_first():
    x = random_images((2, 5, 3, 4))
    reference = np.zeros((1, 1, 11, 7), "float32")
    last = models.ResizeLike(data_format="channels_last")
    first = models.ResizeLike(data_format="channels_first")
    expected = to_numpy(last([x, np.transpose(reference, (0, 2, 3, 1))]))
    actual = first([np.transpose(x, (0, 3, 1, 2)), reference])
    assert actual.shape == (2, 4, 11, 7)
    np.testing.assert_allclose(np.transpose(to_numpy(actual), (0, 2, 3, 1)), expected, atol=1e-6)
