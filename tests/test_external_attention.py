"""ExternalAttention: the released code's forward pass in NumPy, double normalisation axes.

Volumes and clips: the same forward pass over all D * H * W positions.
"""

import functools

import keras
import numpy as np
import pytest
from helpers import images
from helpers import randomized_layer
from helpers import to_numpy

from keras_attention.layers import ExternalAttention

randomized = functools.partial(randomized_layer, ExternalAttention)


def reference(layer, x):
    """EANet's `External_attention.forward` (eval mode) in float64: (outputs, attention)."""
    w = {v.path.split("/", 1)[1]: to_numpy(v).astype("float64") for v in layer.weights}
    flat = x.astype("float64").reshape(x.shape[0], -1, x.shape[-1])  # (b, [D] H W, C)

    def kernel(name):  # (1, 1, [1,] in, out) -> (in, out)
        return w[f"{name}/kernel"].reshape(w[f"{name}/kernel"].shape[-2:])

    features = flat @ kernel("input_conv") + w["input_conv/bias"]  # conv1
    energy = features @ w["memory_key"]  # linear_0: (b, HW, S)
    attention = np.exp(energy - energy.max(axis=1, keepdims=True))
    attention /= attention.sum(axis=1, keepdims=True)  # softmax over positions
    attention /= 1e-9 + attention.sum(axis=2, keepdims=True)  # L1 over the units
    read = attention @ w["memory_value"]  # linear_1
    y = read @ kernel("output_conv")  # conv2, no bias
    y = (y - w["norm/moving_mean"]) / np.sqrt(w["norm/moving_variance"] + 1e-5)
    y = y * w["norm/gamma"] + w["norm/beta"]
    outputs = np.maximum(y + flat, 0.0)  # residual, then ReLU
    return outputs.reshape(x.shape), attention


def test_matches_the_released_code():
    x = images((2, 5, 7, 16), scale=2.0, seed=1)
    layer = randomized(x.shape, units=6)
    expected, expected_attention = reference(layer, x)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)
    assert tuple(attention.shape) == (2, 35, 6)
    np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-7)


def test_double_normalisation_axes():
    x = images((1, 4, 6, 8), scale=3.0, seed=2)
    layer = randomized(x.shape, units=5)
    _, attention = layer(x, return_attention=True)
    attention = to_numpy(attention)
    # The L1 step comes last: rows sum to 1 over the units, columns do not.
    np.testing.assert_allclose(attention.sum(axis=2), 1.0, rtol=1e-5)
    assert np.abs(attention.sum(axis=1) - 1.0).max() > 0.1


def test_value_memory_starts_as_the_key_memory_transposed():
    layer = ExternalAttention(units=8)
    layer(images((1, 3, 3, 16)))
    key, value = to_numpy(layer.memory_key), to_numpy(layer.memory_value)
    assert key.shape == (16, 8) and value.shape == (8, 16)
    np.testing.assert_array_equal(value, key.T)
    assert 0.3 < key.std() < 0.7  # normal(0, sqrt(2 / S)) = 0.5 for S = 8


def test_parameters_at_256_channels():
    layer = ExternalAttention()  # S = 64
    layer(images((1, 4, 4, 256)))
    # conv1 256x256 + bias; M_k 256x64; M_v 64x256; conv2 256x256; BN 4 x 256.
    expected = 256 * 256 + 256 + 2 * 256 * 64 + 256 * 256 + 4 * 256
    assert layer.count_params() == expected == 165_120


def test_mixed_float16_large_energies_stay_finite():
    x = images((2, 6, 6, 16), scale=50.0, seed=3)
    layer = randomized(x.shape, units=8, dtype="mixed_float16")
    outputs, attention = layer(x, return_attention=True)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
    assert np.isfinite(to_numpy(outputs)).all()
    expected, expected_attention = reference(layer, x)
    # Peaked columns: most positions get ~0 from every unit, which the 1e-9
    # guard keeps at ~0 rather than dividing 0 by 0.
    assert expected_attention.max() > 0.99
    # float16 features shift energies of thousands by a few units: loose.
    np.testing.assert_allclose(to_numpy(attention), expected_attention, atol=1e-2)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=2e-2, atol=2.0)


@pytest.mark.parametrize("units", [0, -1, 2.0, None])
def test_bad_units_raise(units):
    with pytest.raises(ValueError, match="`units`"):
        ExternalAttention(units=units)


def test_clip_matches_the_released_code():
    # The softmax runs over all D * H * W positions, the L1 step over the units.
    x = images((2, 3, 5, 7, 16), scale=2.0, seed=6)
    layer = randomized(x.shape, units=6)
    assert tuple(layer.input_conv.kernel.shape) == (1, 1, 1, 16, 16)
    expected, expected_attention = reference(layer, x)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)
    assert tuple(attention.shape) == (2, 105, 6)
    np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-7)
