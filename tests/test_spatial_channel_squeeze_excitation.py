"""SpatialChannelSqueezeExcitation: cSE + sSE against NumPy, both combinations, parameters."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import SpatialChannelSqueezeExcitation


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("reduction, expected", [(2, 66177), (16, 8721)])
def test_parameter_count_for_256_channels(reduction, expected):
    layer = SpatialChannelSqueezeExcitation(reduction=reduction)
    layer.build((None, 8, 8, 256))
    hidden = 256 // reduction
    # cSE: two Dense with biases; sSE: a 1x1 conv C -> 1 with bias.
    assert layer.count_params() == (256 * hidden + hidden) + (hidden * 256 + 256) + 257 == expected


@pytest.mark.parametrize("combine", ["add", "max"])
def test_matches_numpy_reference(combine):
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 12)).astype("float32")
    layer = SpatialChannelSqueezeExcitation(reduction=3, combine=combine)
    layer(x)
    randomize_weights(layer)
    w1, b1, w2, b2, ws, bs = (to_numpy(w) for w in layer.weights)
    channel = sigmoid(np.maximum(x.mean(axis=(1, 2)) @ w1 + b1, 0) @ w2 + b2)
    spatial = sigmoid(x @ ws + bs)  # (B, H, W, 1)
    by_channel, by_position = x * channel[:, None, None, :], x * spatial
    expected = by_channel + by_position if combine == "add" else np.maximum(by_channel, by_position)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(attention["channel"]), channel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(attention["spatial"]), spatial, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-5, atol=1e-5)


def test_spatial_gate_is_one_value_per_pixel_and_channel_gate_one_per_channel():
    x = np.random.default_rng(1).normal(size=(1, 4, 6, 8)).astype("float32")
    layer = SpatialChannelSqueezeExcitation(reduction=2)
    _, attention = layer(x, return_attention=True)
    assert tuple(attention["channel"].shape) == (1, 8)
    assert tuple(attention["spatial"].shape) == (1, 4, 6, 1)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="`combine`"):
        SpatialChannelSqueezeExcitation(combine="concat")
    with pytest.raises(ValueError, match="`reduction`"):
        SpatialChannelSqueezeExcitation(reduction=0)


# Volumes and clips (issue 27).


@pytest.mark.parametrize("combine", ["add", "max"])
def test_volume_matches_numpy_reference(combine):
    x = np.random.default_rng(2).normal(size=(2, 3, 5, 4, 12)).astype("float32")
    layer = SpatialChannelSqueezeExcitation(reduction=3, combine=combine)
    layer(x)
    randomize_weights(layer)
    w1, b1, w2, b2, ws, bs = (to_numpy(w) for w in layer.weights)
    channel = sigmoid(np.maximum(x.mean(axis=(1, 2, 3)) @ w1 + b1, 0) @ w2 + b2)
    spatial = sigmoid(x @ ws + bs)  # (B, D, H, W, 1)
    by_channel, by_position = x * channel[:, None, None, None, :], x * spatial
    expected = by_channel + by_position if combine == "add" else np.maximum(by_channel, by_position)
    outputs, attention = layer(x, return_attention=True)
    assert tuple(attention["spatial"].shape) == (2, 3, 5, 4, 1)
    np.testing.assert_allclose(to_numpy(attention["channel"]), channel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(attention["spatial"]), spatial, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels, reduction", [(16, 4), (12, 16)])
def test_volume_max_combination_equals_fvcore(channels, reduction):
    """fvcore's ChannelSpatialSqueezeExcitation(is_3d=True) with our weights copied."""
    torch = pytest.importorskip("torch")
    squeeze_excitation = pytest.importorskip("fvcore.nn.squeeze_excitation")
    x = np.random.default_rng(3).normal(size=(2, 3, 6, 5, channels)).astype("float32")
    layer = SpatialChannelSqueezeExcitation(reduction=reduction, combine="max")
    layer(x)
    randomize_weights(layer)
    hidden = max(1, channels // reduction)
    reference = squeeze_excitation.ChannelSpatialSqueezeExcitation(
        channels, num_channels_reduced=hidden, is_3d=True
    ).eval()
    w1, b1, w2, b2, ws, bs = (torch.tensor(to_numpy(w)) for w in layer.weights)
    conv1, _, conv2, _ = reference.channel.block
    spatial = reference.spatial.block[0]
    with torch.no_grad():
        for conv, kernel, bias in ((conv1, w1, b1), (conv2, w2, b2), (spatial, ws, bs)):
            conv.weight.copy_(kernel.T[:, :, None, None, None])
            conv.bias.copy_(bias)
        expected = reference(torch.tensor(np.moveaxis(x, -1, 1))).numpy()
    outputs = to_numpy(layer(x))
    np.testing.assert_allclose(outputs, np.moveaxis(expected, 1, -1), rtol=1e-5, atol=1e-6)
