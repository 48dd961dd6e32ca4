"""Checks shared by the model tests: parameter counts and `.keras` round trips."""

import math

import keras
import numpy as np
from helpers import to_numpy


def trainable_count(model):
    """Trainable parameters, counted from the weight shapes (nothing runs)."""
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def random_images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def assert_keras_round_trip(model, x, tmp_path):
    """Saves `model`, reloads it in safe mode without custom_objects, compares outputs."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True
    assert loaded.name == model.name
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    expected = to_numpy(model(x, training=False))
    np.testing.assert_allclose(to_numpy(loaded(x, training=False)), expected, rtol=1e-5, atol=1e-5)
