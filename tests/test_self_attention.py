"""SelfAttention2D (SAGAN): identity at init, a NumPy reference, fused vs explicit paths.

Volumes and clips: the same reference over all D * H * W positions.
"""

import functools

import keras
import numpy as np
import pytest
from helpers import images
from helpers import randomized_layer
from helpers import to_numpy
from helpers import trainable_gradients

from keras_attention.layers import SelfAttention2D

randomized = functools.partial(randomized_layer, SelfAttention2D)


def reference(layer, x):
    """SAGAN from the layer's own weights, in float64: (outputs, attention)."""
    w = {v.path.split("/", 1)[1]: to_numpy(v).astype("float64") for v in layer.weights}
    batch, channels = x.shape[0], x.shape[-1]
    flat = x.astype("float64").reshape(batch, -1, channels)

    def kernel(name):  # (1, 1, [1,] in, out) -> (in, out)
        return w[f"{name}/kernel"].reshape(w[f"{name}/kernel"].shape[-2:])

    query = flat @ kernel("query") + w["query/bias"]
    key = flat @ kernel("key")
    value = flat @ kernel("value") + w["value/bias"]
    energy = query @ key.transpose(0, 2, 1)
    attention = np.exp(energy - energy.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    outputs = w["gamma"] * (attention @ value) + flat
    return outputs.reshape(x.shape), attention


def test_identity_at_initialisation():
    layer = SelfAttention2D(reduction=2)
    x = images((2, 5, 7, 8))
    np.testing.assert_array_equal(to_numpy(layer(x)), x)
    outputs, _ = layer(x, return_attention=True)
    np.testing.assert_array_equal(to_numpy(outputs), x)
    assert to_numpy(layer.gamma) == 0.0


@pytest.mark.parametrize("return_attention", [False, True], ids=["fused", "explicit"])
def test_matches_numpy_reference(return_attention):
    x = images((2, 5, 7, 16), seed=1)
    layer = randomized(x.shape, reduction=4)
    expected, expected_attention = reference(layer, x)
    outputs = layer(x, return_attention=return_attention)
    if return_attention:
        outputs, attention = outputs
        assert tuple(attention.shape) == (2, 35, 35)
        np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)


def test_channels_first_attention_is_row_major():
    x = images((1, 3, 4, 8), seed=2)
    last = randomized(x.shape, reduction=2, data_format="channels_last")
    first = SelfAttention2D(reduction=2, data_format="channels_first")
    first(np.transpose(x, (0, 3, 1, 2)))
    first.set_weights(last.get_weights())
    _, expected = reference(last, x)
    _, attention = first(np.transpose(x, (0, 3, 1, 2)), return_attention=True)
    np.testing.assert_allclose(to_numpy(attention), expected, rtol=1e-4, atol=1e-6)


def test_fused_and_explicit_paths_agree_on_large_energies():
    x = images((2, 6, 6, 16), scale=3.0, seed=3)
    layer = randomized(x.shape, reduction=1)
    _, attention = reference(layer, x)
    assert attention.max() > 0.9  # peaked rows: the softmax is really tested
    fused = to_numpy(layer(x))
    explicit = to_numpy(layer(x, return_attention=True)[0])
    np.testing.assert_allclose(fused, explicit, rtol=1e-4, atol=1e-4)


def test_mixed_float16_unscaled_energies_stay_finite():
    x = images((2, 6, 10, 32), scale=50.0, seed=4)
    layer = randomized(x.shape, reduction=1, dtype="mixed_float16")
    w = {v.path.split("/", 1)[1]: to_numpy(v).astype("float64") for v in layer.weights}
    flat = x.reshape(2, -1, 32).astype("float64")
    query = flat @ w["query/kernel"][0, 0] + w["query/bias"]
    key = flat @ w["key/kernel"][0, 0]
    # The energies exceed float16's range, so this tests the float32 handling.
    assert np.abs(query @ key.transpose(0, 2, 1)).max() > np.finfo("float16").max
    fused = layer(x)
    explicit, attention = layer(x, return_attention=True)
    assert keras.backend.standardize_dtype(fused.dtype) == "float16"
    for tensor in (fused, explicit, attention):
        assert np.isfinite(to_numpy(tensor)).all()


def test_no_redundant_weights():
    # A key bias would only get float rounding noise (~1e-6): the softmax
    # over keys cancels it. Every weight here must matter.
    layer = randomized((2, 4, 5, 8), reduction=2)
    gradients = trainable_gradients(layer, images((2, 4, 5, 8), seed=5))
    largest = max(np.abs(g).max() for g in gradients)
    for weight, gradient in zip(layer.trainable_weights, gradients):
        assert np.abs(gradient).max() > 1e-3 * largest, weight.path


@pytest.mark.parametrize("reduction", [0, -2, 2.5, "8", True])
def test_bad_reduction_raises(reduction):
    with pytest.raises(ValueError, match="`reduction`"):
        SelfAttention2D(reduction=reduction)


def test_identity_at_initialisation_on_clips():
    layer = SelfAttention2D(reduction=2)
    x = images((2, 3, 5, 4, 8))
    np.testing.assert_array_equal(to_numpy(layer(x)), x)
    assert tuple(layer.query.kernel.shape) == (1, 1, 1, 8, 4)


@pytest.mark.parametrize("return_attention", [False, True], ids=["fused", "explicit"])
def test_clip_matches_numpy_reference(return_attention):
    # Every position of every frame attends to all D * H * W positions.
    x = images((2, 3, 5, 7, 16), seed=6)
    layer = randomized(x.shape, reduction=4)
    expected, expected_attention = reference(layer, x)
    # (batch, query frame, query, key frame): the weight on the other frames.
    frames = expected_attention.reshape(2, 3, 35, 3, 35).sum(-1)
    across = frames.sum(-1) - np.einsum("bqpq->bqp", frames)
    assert across.mean() > 0.1
    outputs = layer(x, return_attention=return_attention)
    if return_attention:
        outputs, attention = outputs
        assert tuple(attention.shape) == (2, 105, 105)
        np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)


def test_clip_channels_first_attention_is_row_major():
    x = images((1, 2, 3, 4, 8), seed=7)
    last = randomized(x.shape, reduction=2, data_format="channels_last")
    first = SelfAttention2D(reduction=2, data_format="channels_first")
    first(np.transpose(x, (0, 4, 1, 2, 3)))
    first.set_weights(last.get_weights())
    expected, expected_attention = reference(last, x)
    outputs, attention = first(np.transpose(x, (0, 4, 1, 2, 3)), return_attention=True)
    np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(outputs), np.transpose(expected, (0, 4, 1, 2, 3)), rtol=1e-4, atol=1e-5
    )
