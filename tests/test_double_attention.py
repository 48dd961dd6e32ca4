"""DoubleAttention (A²-Nets): the paper's equations in NumPy, softmax axes, the dropped biases.

Volumes and clips: the same equations over all D * H * W positions.
"""

import functools

import keras
import numpy as np
import pytest
from helpers import images
from helpers import randomized_layer
from helpers import to_numpy

from keras_attention.layers import DoubleAttention

randomized = functools.partial(randomized_layer, DoubleAttention)


def weights_of(layer):
    return {v.path.split("/", 1)[1]: to_numpy(v).astype("float64") for v in layer.weights}


def softmax(e, axis):
    e = np.exp(e - e.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def reference(layer, x, feature_bias=0.0, gather_bias=0.0):
    """Eqs. (1)-(4) of the paper in float64, with optional A and B biases."""
    w = weights_of(layer)
    flat = x.astype("float64").reshape(x.shape[0], -1, x.shape[-1])  # (b, [D] H W, C)

    def kernel(name):  # (1, 1, [1,] in, out) -> (in, out)
        return w[f"{name}/kernel"].reshape(w[f"{name}/kernel"].shape[-2:])

    a = flat @ kernel("features") + feature_bias  # (b, HW, m)
    b = flat @ kernel("gather") + gather_bias  # (b, HW, n)
    v = flat @ kernel("distribute") + w["distribute/bias"]
    gather = softmax(b, axis=1)  # each map over positions
    distribute = softmax(v, axis=2)  # each position over descriptors
    descriptors = np.einsum("bpm,bpn->bmn", a, gather)  # G = A softmax(B)^T
    z = np.einsum("bmn,bpn->bpm", descriptors, distribute)  # z_i = G v_i
    outputs = flat + z @ kernel("project") + w["project/bias"]
    return outputs.reshape(x.shape), gather, distribute


def test_matches_the_papers_equations():
    x = images((2, 5, 7, 16), scale=2.0, seed=1)
    layer = randomized(x.shape, feature_channels=6, descriptors=5)
    expected, gather, distribute = reference(layer, x)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)
    assert tuple(attention["gather"].shape) == tuple(attention["distribute"].shape) == (2, 35, 5)
    np.testing.assert_allclose(to_numpy(attention["gather"]), gather, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(to_numpy(attention["distribute"]), distribute, rtol=1e-4, atol=1e-7)
    # The two softmax axes: maps over positions, vectors over descriptors.
    np.testing.assert_allclose(to_numpy(attention["gather"]).sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(attention["distribute"]).sum(axis=2), 1.0, rtol=1e-5)


def test_dropped_biases_change_nothing_that_the_output_bias_cannot():
    # B's bias cancels in the softmax over positions; A's bias a reaches every
    # position as a (the distribution weights sum to 1), i.e. W a on the output.
    x = images((1, 4, 5, 8), seed=2)
    layer = randomized(x.shape, feature_channels=3, descriptors=4)
    rng = np.random.default_rng(3)
    feature_bias, gather_bias = rng.normal(size=3), rng.normal(size=4)
    with_biases = reference(layer, x, feature_bias, gather_bias)[0]
    shift = feature_bias @ weights_of(layer)["project/kernel"][0, 0]
    np.testing.assert_allclose(with_biases, reference(layer, x)[0] + shift, rtol=1e-10, atol=1e-10)


def test_default_widths_are_a_quarter():
    layer = DoubleAttention()
    layer(images((1, 4, 4, 32)))
    assert tuple(layer.features.kernel.shape) == (1, 1, 32, 8)
    assert tuple(layer.gather.kernel.shape) == tuple(layer.distribute.kernel.shape) == (1, 1, 32, 8)


def test_parameters_at_256_channels():
    layer = DoubleAttention()  # m = n = 64
    layer(images((1, 4, 4, 256)))
    # A, B: 256 x 64 each; V: 256 x 64 + 64; back to C: 64 x 256 + 256.
    assert layer.count_params() == 3 * 256 * 64 + 64 + 64 * 256 + 256 == 65_856


def test_mixed_float16_large_logits_stay_finite():
    x = images((2, 6, 6, 16), scale=50.0, seed=4)
    layer = randomized(x.shape, feature_channels=4, descriptors=4, dtype="mixed_float16")
    logits = x.reshape(2, 36, 16) @ to_numpy(layer.gather.kernel)[0, 0]
    assert np.abs(logits).max() > 12.0  # exp() overflows float16 there
    outputs, attention = layer(x, return_attention=True)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
    assert np.isfinite(to_numpy(outputs)).all()
    np.testing.assert_allclose(to_numpy(attention["gather"]).sum(axis=1), 1.0, atol=1e-2)


@pytest.mark.parametrize("name, value", [("feature_channels", 0), ("descriptors", 1.5)])
def test_bad_arguments_raise(name, value):
    with pytest.raises(ValueError, match=f"`{name}`"):
        DoubleAttention(**{name: value})


def test_clip_matches_the_papers_equations():
    # The gather pools over all frames: each map sums to 1 over D * H * W positions.
    x = images((2, 3, 5, 7, 16), scale=2.0, seed=5)
    layer = randomized(x.shape, feature_channels=6, descriptors=5)
    assert tuple(layer.features.kernel.shape) == (1, 1, 1, 16, 6)
    expected, gather, distribute = reference(layer, x)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)
    assert tuple(attention["gather"].shape) == tuple(attention["distribute"].shape) == (2, 105, 5)
    np.testing.assert_allclose(to_numpy(attention["gather"]), gather, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(to_numpy(attention["distribute"]), distribute, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(to_numpy(attention["gather"]).sum(axis=1), 1.0, rtol=1e-5)
