"""Polarized self-attention: both layouts against a NumPy reference of the authors' PSA_p / PSA_s.

Volumes and clips: the same reference with its softmaxes and pooling over D * H * W positions.
"""

import numpy as np
import pytest
import test_layer_contract as contract
import test_mixed_precision_contract as mixed_contract
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import PolarizedSelfAttention


def random_input(shape=(2, 5, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def randomized(layer, x):
    layer(x)
    randomize_weights(layer)
    return layer


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def positions(x):  # the spatial axes of (batch, [D,] H, W, C)
    return tuple(range(1, x.ndim - 1))


def softmax_over_positions(x):
    e = np.exp(x - x.max(axis=positions(x), keepdims=True))
    return e / e.sum(axis=positions(x), keepdims=True)


def numpy_reference(x, layer):
    """float64, following DeLightCMU/PSA's PSA_p and PSA_s forward passes."""
    x = x.astype("float64")

    def w(dense):
        return to_numpy(dense.kernel).astype("float64")

    def channel_gate(x):
        weights = softmax_over_positions(x @ w(layer.channel_query))  # (B, H, W, 1)
        context = (x @ w(layer.channel_value) * weights).sum(axis=positions(x))
        if layer.layout == "parallel":
            return sigmoid(context @ w(layer.channel_up))
        z = context @ w(layer.channel_reduce) + to_numpy(layer.channel_reduce.bias)
        z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5)
        z = np.maximum(
            z * to_numpy(layer.channel_norm.gamma) + to_numpy(layer.channel_norm.beta), 0
        )
        return sigmoid(z @ w(layer.channel_expand) + to_numpy(layer.channel_expand.bias))

    def spatial_gate(x):
        query = (x @ w(layer.spatial_query)).mean(axis=positions(x), keepdims=True)  # no softmax
        value = x @ w(layer.spatial_value)
        if layer.layout == "parallel":
            return sigmoid(softmax_over_positions((query * value).sum(-1, keepdims=True)))
        return sigmoid((query * softmax_over_positions(value)).sum(-1, keepdims=True))

    channel = channel_gate(x)
    channel_out = x * channel.reshape(channel.shape[:1] + (1,) * (x.ndim - 2) + channel.shape[1:])
    if layer.layout == "parallel":
        spatial = spatial_gate(x)
        return channel_out + x * spatial, channel, spatial
    spatial = spatial_gate(channel_out)
    return channel_out * spatial, channel, spatial


@pytest.mark.parametrize("layout", ["parallel", "sequential"])
def test_matches_numpy_reference(layout):
    x = random_input()
    layer = randomized(PolarizedSelfAttention(layout=layout), x)
    expected, channel, spatial = numpy_reference(x, layer)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(attention["channel"]), channel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(attention["spatial"]), spatial, rtol=1e-4, atol=1e-6)


def test_parallel_spatial_gate_is_a_sigmoid_of_a_softmax_over_positions():
    x = random_input()
    layer = randomized(PolarizedSelfAttention(), x)
    spatial = to_numpy(layer(x, return_attention=True)[1]["spatial"]).astype("float64")
    logits = np.log(spatial / (1.0 - spatial))
    np.testing.assert_allclose(logits.sum(axis=(1, 2, 3)), 1.0, rtol=1e-4)


@pytest.mark.parametrize("layout, expected", [("parallel", 131328), ("sequential", 111200)])
def test_parameter_counts_for_256_channels(layout, expected):
    # Equal to the parameter counts of PSA_p(256, 256) and PSA_s(256, 256).
    layer = PolarizedSelfAttention(layout=layout)
    layer.build((None, 8, 8, 256))
    assert layer.count_params() == expected


def test_sequential_needs_8_channels():
    with pytest.raises(ValueError, match="at least 8 channels"):
        PolarizedSelfAttention(layout="sequential")(random_input((1, 4, 4, 4)))


SEQUENTIAL = contract.Case(PolarizedSelfAttention, {"layout": "sequential"}, 16, {"layout": "x"})


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_sequential_mixed_precision(policy):
    subject = mixed_contract.case_subject(SEQUENTIAL)
    mixed_contract.test_mixed_precision_matches_float32(subject, policy)
    mixed_contract.test_mixed_precision_gradients_are_finite(subject, policy)


def test_sequential_round_trips_and_formats(tmp_path):
    contract.test_keras_file_round_trip_in_safe_mode(SEQUENTIAL, tmp_path)
    contract.test_channels_first_matches_channels_last(SEQUENTIAL)
    contract.test_gradients_reach_every_trainable_weight(SEQUENTIAL)


@pytest.mark.parametrize("layout", ["parallel", "sequential"])
def test_clip_matches_numpy_reference(layout):
    x = random_input((2, 3, 5, 4, 16), seed=4)
    layer = randomized(PolarizedSelfAttention(layout=layout), x)
    expected, channel, spatial = numpy_reference(x, layer)
    outputs, attention = layer(x, return_attention=True)
    assert tuple(attention["spatial"].shape) == (2, 3, 5, 4, 1)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(attention["channel"]), channel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(attention["spatial"]), spatial, rtol=1e-4, atol=1e-6)


def test_clip_spatial_softmax_spans_every_frame():
    # PSA_p's spatial gate is sigmoid(softmax over positions): on a clip the
    # softmax runs over D * H * W, so the gate's logits sum to 1 over all frames.
    x = random_input((1, 3, 4, 5, 8), seed=5)
    layer = randomized(PolarizedSelfAttention(), x)
    _, attention = layer(x, return_attention=True)
    logits = np.log(to_numpy(attention["spatial"])) - np.log1p(-to_numpy(attention["spatial"]))
    np.testing.assert_allclose(logits.sum(), 1.0, rtol=1e-3)
