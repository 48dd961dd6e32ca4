"""The models' Conv2D/Conv3D: Keras's, with a channels_first bias on the channel axis."""

import keras
import numpy as np
import pytest
from helpers import images
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.models import _common
from keras_attention.models.conv import Conv2D
from keras_attention.models.conv import Conv3D

# Width 4 = filters 4: where Keras 3.15's TensorFlow add puts a (1, C, 1, ...)
# bias on the width axis.
SHAPES = [
    pytest.param(Conv2D, (2, 5, 4, 3), id="2d"),
    pytest.param(Conv3D, (2, 3, 5, 4, 3), id="3d"),
]


@pytest.mark.parametrize("cls, shape", SHAPES)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_channels_first_equals_channels_last_where_width_equals_filters(cls, shape, activation):
    if not _common.channels_first_runs():
        pytest.skip("no NCHW convolution on this backend and machine")
    last = cls(4, 3, padding="same", activation=activation, data_format="channels_last")
    first = cls(4, 3, padding="same", activation=activation, data_format="channels_first")
    x = images(shape)
    last(x)
    randomize_weights(last)
    first.build((shape[0], shape[-1]) + shape[1:-1])
    first.set_weights(last.get_weights())
    actual = np.moveaxis(to_numpy(first(np.moveaxis(x, -1, 1))), 1, -1)
    np.testing.assert_allclose(actual, to_numpy(last(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls, shape", SHAPES)
def test_channels_last_equals_keras(cls, shape):
    ours = cls(4, 3, padding="same")
    keras_cls = getattr(keras.layers, cls.__name__)
    theirs = keras_cls(4, 3, padding="same")
    x = images(shape)
    ours(x)
    theirs(x)
    randomize_weights(ours)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_array_equal(to_numpy(ours(x)), to_numpy(theirs(x)))


def test_saves_and_loads_in_safe_mode(tmp_path):
    inputs = keras.Input((4, 5, 3))
    model = keras.Model(inputs, Conv2D(4, 3, name="conv")(inputs))
    randomize_weights(model)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.get_layer("conv")) is Conv2D
    x = images((1, 4, 5, 3))
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
