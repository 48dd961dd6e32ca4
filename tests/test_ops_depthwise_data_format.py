"""ops.depthwise_conv takes channels-last maps whatever Keras's global image data format is."""

import keras
import numpy as np
import pytest
from helpers import to_numpy

from keras_attention import ops as ka_ops


@pytest.fixture
def global_channels_first():
    before = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    yield
    keras.config.set_image_data_format(before)


@pytest.mark.parametrize("rank", [2, 3])
def test_depthwise_conv_is_channels_last_under_a_global_channels_first(rank, global_channels_first):
    rng = np.random.default_rng(0)
    spatial = (4, 6, 5)[-rank:]
    x = rng.normal(size=(2, *spatial, 3)).astype("float32")
    kernel = rng.normal(size=(3,) * rank + (3, 1)).astype("float32")
    # One channel at a time through a plain convolution: the depthwise sums, channels last.
    expected = np.concatenate(
        [
            to_numpy(
                keras.ops.conv(
                    x[..., c : c + 1],
                    kernel[..., c : c + 1, :],
                    data_format="channels_last",
                    padding="same",
                )
            )
            for c in range(3)
        ],
        axis=-1,
    )
    actual = to_numpy(ka_ops.depthwise_conv(x, kernel))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
