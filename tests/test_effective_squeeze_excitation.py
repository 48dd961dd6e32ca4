"""EffectiveSqueezeExcitation: timm's EffectiveSEModule with the same weights, hard sigmoid."""

import numpy as np
import pytest
import torch
from helpers import randomize_weights
from helpers import to_numpy
from timm_import import import_timm

from keras_attention.layers import EffectiveSqueezeExcitation


def random_input(shape=(2, 5, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_parameter_count_for_256_channels():
    layer = EffectiveSqueezeExcitation()
    layer.build((None, 7, 7, 256))
    assert layer.count_params() == 256 * 256 + 256  # one full-width 1x1 conv, no bottleneck


@pytest.mark.parametrize("gate", ["hard_sigmoid", "sigmoid"])
def test_matches_timm(gate):
    import_timm()
    from timm.layers.squeeze_excite import EffectiveSEModule

    layer = EffectiveSqueezeExcitation(gate=gate)
    x = random_input() * 3.0  # reach both flat parts of the hard sigmoid
    layer(x)
    randomize_weights(layer)
    module = EffectiveSEModule(16, gate_layer=gate).eval()
    kernel, bias = (to_numpy(w) for w in layer.weights)
    module.fc.weight.data = torch.tensor(kernel.T[:, :, None, None])
    module.fc.bias.data = torch.tensor(bias)
    expected = module(torch.tensor(x.transpose(0, 3, 1, 2))).detach().numpy()
    np.testing.assert_allclose(
        to_numpy(layer(x)), expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6
    )


def test_gate_is_relu6_of_logits_plus_3_over_6():
    layer = EffectiveSqueezeExcitation()
    x = random_input() * 3.0
    layer(x)
    randomize_weights(layer)
    kernel, bias = (to_numpy(w) for w in layer.weights)
    logits = x.mean(axis=(1, 2)) @ kernel + bias
    expected = np.clip(logits + 3.0, 0.0, 6.0) / 6.0
    outputs, gate = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(gate), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), x * expected[:, None, None], rtol=1e-5, atol=1e-5)


def test_bad_gate_raises():
    with pytest.raises(ValueError, match="`gate`"):
        EffectiveSqueezeExcitation(gate="relu")


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("gate", ["hard_sigmoid", "sigmoid"])
def test_volume_matches_numpy(gate, data_format):
    """5-D clips (timm-3d's EffectiveSEModule is still 2-D inside): the mean over D, H, W."""
    layer = EffectiveSqueezeExcitation(gate=gate, data_format=data_format)
    x = random_input((2, 3, 5, 4, 16), seed=2) * 3.0
    if data_format == "channels_first":
        x = np.moveaxis(x, -1, 1)
    layer(x)
    randomize_weights(layer)
    kernel, bias = layer.get_weights()
    axes = (1, 2, 3) if data_format == "channels_last" else (2, 3, 4)
    logits = x.mean(axis=axes) @ kernel + bias
    expected_gate = (
        np.clip(logits / 6 + 0.5, 0, 1) if gate == "hard_sigmoid" else 1 / (1 + np.exp(-logits))
    )
    outputs, gate_ = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(gate_), expected_gate, rtol=1e-5, atol=1e-6)
    shape = (2, 1, 1, 1, 16) if data_format == "channels_last" else (2, 16, 1, 1, 1)
    np.testing.assert_allclose(
        to_numpy(outputs), x * expected_gate.reshape(shape), rtol=1e-5, atol=1e-6
    )
