"""StyleRecalibration: the authors' SRM forward pass (unbiased std, CFC, BN, sigmoid)."""

import numpy as np
import pytest
import torch
from helpers import randomize_weights
from helpers import to_numpy
from helpers import trainable_gradients

from keras_attention.layers import StyleRecalibration


def random_input(shape=(2, 5, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def srm_reference(x, cfc, gamma, beta, mean, variance, epsilon=1e-5):
    """The authors' SRMLayer in eval mode, in PyTorch, on NCHW `x`."""
    x = torch.tensor(x)
    n, c = x.shape[:2]
    flat = x.view(n, c, -1)
    style = torch.stack([flat.mean(-1), flat.std(-1)], dim=-1)  # unbiased std
    z = (style * torch.tensor(cfc)[None]).sum(-1)
    z = (z - torch.tensor(mean)) / torch.sqrt(torch.tensor(variance) + epsilon)
    gate = torch.sigmoid(z * torch.tensor(gamma) + torch.tensor(beta))
    return (x * gate[:, :, None, None]).numpy(), gate.numpy()


def test_parameter_count_for_256_channels():
    layer = StyleRecalibration()
    layer.build((None, 7, 7, 256))
    assert layer.count_params() == 2 * 256 + 4 * 256  # CFC + BatchNormalization
    assert sum(int(np.prod(w.shape)) for w in layer.trainable_weights) == 4 * 256


def test_matches_the_authors_forward_pass():
    layer = StyleRecalibration()
    x = random_input()
    layer(x)
    randomize_weights(layer)
    expected, expected_gate = srm_reference(x.transpose(0, 3, 1, 2), *layer.get_weights())
    outputs, gate = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(gate), expected_gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(outputs), expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6
    )


def test_halves_the_input_at_initialisation():
    # CFC starts at zero (the authors' init) and BN at beta=0: every gate is sigmoid(0).
    x = random_input()
    outputs, gate = StyleRecalibration()(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(gate), 0.5)
    np.testing.assert_allclose(to_numpy(outputs), x / 2, rtol=1e-6)


def test_constant_channel_has_finite_gradients():
    # A channel that ReLU zeroed has std 0, where sqrt's derivative is infinite.
    layer = StyleRecalibration()
    x = random_input()
    x[..., 3] = 0.0
    layer(x)
    randomize_weights(layer)
    for gradient in trainable_gradients(layer, x):
        assert np.isfinite(gradient).all()


def test_bad_data_format_raises():
    with pytest.raises(ValueError, match="`data_format`"):
        StyleRecalibration(data_format="NCHW")
