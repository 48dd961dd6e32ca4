"""channels_first models: built where the backend runs NCHW, refused with a clear
ValueError at build time where it cannot (TensorFlow on a CPU without oneDNN)."""

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy
from model_checks import random_images

from keras_attention import models
from keras_attention.models import _common

# Every builder entry point, with a small channels_first input.
BUILDERS = [
    pytest.param(lambda: models.ResNet18(input_shape=(3, 32, 32), classes=10), id="ResNet18"),
    pytest.param(lambda: models.ResNet50(input_shape=(3, 32, 32), classes=10), id="ResNet50"),
    pytest.param(
        lambda: models.ResidualAttentionNet56(
            input_shape=(3, 32, 32), classes=10, small_input=True
        ),
        id="ResidualAttentionNet56",
    ),
    pytest.param(lambda: models.AttentionCNN("cbam", input_shape=(1, 28, 28)), id="AttentionCNN"),
    pytest.param(
        lambda: models.SpatialTransformerClassifier(input_shape=(1, 28, 28)),
        id="SpatialTransformerClassifier",
    ),
    pytest.param(lambda: models.DANet(classes=3, input_shape=(3, None, None)), id="DANet"),
    pytest.param(lambda: models.CCNet(classes=3, input_shape=(3, None, None)), id="CCNet"),
]


@pytest.mark.parametrize("build", BUILDERS)
def test_refused_at_build_time_where_nchw_cannot_run(build, monkeypatch):
    monkeypatch.setattr(_common, "channels_first_runs", lambda: False)
    keras.config.set_image_data_format("channels_first")  # conftest restores it
    with pytest.raises(ValueError, match="cannot run NCHW") as error:
        build()
    message = str(error.value)
    assert "oneDNN" in message  # why
    assert "set_image_data_format('channels_last')" in message  # what to do


def test_built_where_nchw_runs(monkeypatch):
    monkeypatch.setattr(_common, "channels_first_runs", lambda: True)
    keras.config.set_image_data_format("channels_first")
    model = models.ResNet18(attention="cbam", input_shape=(3, None, None), classes=10)
    assert model.get_layer("conv1_conv").data_format == "channels_first"
    assert model.get_layer("conv2_block1_attention").data_format == "channels_first"


def test_channels_last_never_probes(monkeypatch):
    def probe():
        raise AssertionError("probed for a channels_last model")

    monkeypatch.setattr(_common, "channels_first_runs", probe)
    assert models.AttentionCNN("se").name == "se_attention_cnn"


def test_probe_tells_whether_an_nchw_convolution_runs():
    conv = keras.layers.Conv2D(2, 3, padding="same", data_format="channels_first")
    x = random_images((1, 3, 8, 8))
    if _common.channels_first_runs():
        assert to_numpy(conv(x)).shape == (1, 2, 8, 8)
    else:
        with pytest.raises(Exception, match="NHWC|NCHW"):
            to_numpy(conv(x))


def test_probe_runs_once():
    _common.channels_first_runs()
    _common.channels_first_runs()
    assert _common.channels_first_runs.cache_info().currsize == 1
    assert _common.channels_first_runs.cache_info().misses <= 1


def assert_channels_first_matches_channels_last(build, last_shape, image_size, randomize=False):
    """`build(input_shape)` channels_last (`last_shape`, H x W x C), then channels_first
    with its weights: the same outputs on the same `image_size` images, transposed."""
    last = build(last_shape)
    if randomize:
        randomize_weights(last)
    keras.config.set_image_data_format("channels_first")  # conftest restores it
    first = build((last_shape[-1], *last_shape[:-1]))
    first.set_weights(last.get_weights())
    x = random_images((2, *image_size, last_shape[-1]))
    np.testing.assert_allclose(
        to_numpy(first(np.transpose(x, (0, 3, 1, 2)), training=False)),
        to_numpy(last(x, training=False)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_channels_first_model_matches_channels_last_or_is_refused():
    """The real thing on this backend and machine, whichever case it is."""

    def build(shape):
        return models.AttentionCNN("cbam", input_shape=shape, widths=(8, 16))

    if not _common.channels_first_runs():
        keras.config.set_image_data_format("channels_first")  # conftest restores it
        with pytest.raises(ValueError, match="cannot run NCHW"):
            build((1, None, None))
        return
    assert_channels_first_matches_channels_last(build, (None, None, 1), (12, 16))


def test_biased_convolution_as_wide_as_its_filters_matches_channels_last():
    """conv1 has 32 filters on 32-wide images: where Keras 3.15's TensorFlow add put a
    channels_first bias on the width axis (models.conv)."""
    if not _common.channels_first_runs():
        pytest.skip("no NCHW convolution on this backend and machine")
    assert_channels_first_matches_channels_last(
        lambda shape: models.SpatialTransformerClassifier(input_shape=shape),
        (32, 32, 1),
        (32, 32),
        randomize=True,
    )
