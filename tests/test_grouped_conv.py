import keras
import numpy as np
import pytest
from helpers import to_numpy
from helpers import trainable_gradients

from keras_attention.models.grouped_conv import GroupedConv2D


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strides": 1, "padding": "same", "use_bias": True},
        {"strides": 2, "padding": "valid", "use_bias": False},
        {"dilation_rate": 2, "padding": "same", "use_bias": False},
    ],
)
def test_equals_keras_grouped_conv2d_with_the_same_weights(kwargs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 8, 16)).astype("float32")
    ours = GroupedConv2D(8, 3, groups=4, **kwargs)
    reference = keras.layers.Conv2D(8, 3, groups=4, **kwargs)
    ours.build(x.shape)
    reference.build(x.shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()]
    ours.set_weights(weights)
    reference.set_weights(weights)
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(reference(x)), rtol=1e-4, atol=1e-4)
    for a, b in zip(trainable_gradients(ours, x), trainable_gradients(reference, x)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_saved_model_reloads_as_grouped_conv2d(tmp_path):
    inputs = keras.Input((6, 6, 8))
    model = keras.Model(inputs, GroupedConv2D(8, 3, groups=2, name="grouped")(inputs))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.get_layer("grouped")) is GroupedConv2D
    x = np.random.default_rng(1).normal(size=(1, 6, 6, 8)).astype("float32")
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(model(x)), rtol=1e-6)
