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


def srm_reference(x, cfc, gamma, beta, mean, variance, epsilon=1e-5, style_epsilon=1e-5):
    """The authors' SRMLayer in eval mode, in PyTorch, on NCHW `x`.

    `style_epsilon=1e-5` is their current style pooling, `sqrt(var + 1e-5)`
    (commit "FIX : style pooling"); 0 is their first commit's `std()`.
    """
    x = torch.tensor(x)
    n, c = x.shape[:2]
    flat = x.view(n, c, -1)
    std = (flat.var(-1) + style_epsilon).sqrt()  # unbiased variance
    style = torch.stack([flat.mean(-1), std], dim=-1)
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


@pytest.mark.parametrize("epsilon", [1e-5, 0.0])
def test_matches_both_versions_of_the_authors_style_pooling_at_small_scale(epsilon):
    # At input scale 0.05 the variance is ~2.5e-3, so 1e-5 moves the std by
    # ~1e-4 (0.2%). The gate reads the std alone, centred on 0.05 and scaled
    # by 1/0.01 in the normalisation, so that shift moves it by ~2e-3: each
    # form is matched and the other one is not.
    layer = StyleRecalibration(epsilon=epsilon)
    x = 0.05 * random_input(seed=1)
    layer(x)
    channels = x.shape[-1]
    cfc = np.stack([np.zeros(channels), np.linspace(0.5, 1.5, channels)], axis=-1)
    ones, zeros = np.ones(channels), np.zeros(channels)
    weights = [cfc, ones, zeros, 0.05 * cfc[:, 1], 1e-4 * ones]
    layer.set_weights([w.astype("float32") for w in weights])
    nchw = x.transpose(0, 3, 1, 2)
    _, expected = srm_reference(nchw, *weights, style_epsilon=epsilon)
    _, other = srm_reference(nchw, *weights, style_epsilon=1e-5 - epsilon)
    _, gate = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(gate), expected, rtol=1e-5, atol=1e-6)
    assert np.abs(to_numpy(gate) - other).max() > 1e-4


def test_default_epsilon_is_the_authors_current_one():
    assert StyleRecalibration().epsilon == 1e-5
    assert StyleRecalibration(epsilon=0).get_config()["epsilon"] == 0


@pytest.mark.parametrize("epsilon", [-1e-5, "1e-5", None, True, float("nan")])
def test_bad_epsilon_raises(epsilon):
    with pytest.raises(ValueError, match="`epsilon`"):
        StyleRecalibration(epsilon=epsilon)


def test_halves_the_input_at_initialisation():
    # CFC starts at zero (the authors' init) and BN at beta=0: every gate is sigmoid(0).
    x = random_input()
    outputs, gate = StyleRecalibration()(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(gate), 0.5)
    np.testing.assert_allclose(to_numpy(outputs), x / 2, rtol=1e-6)


def test_constant_channel_has_finite_gradients():
    # A channel that ReLU zeroed has std 0, where sqrt's derivative is infinite.
    layer = StyleRecalibration(epsilon=0)
    x = random_input()
    x[..., 3] = 0.0
    layer(x)
    randomize_weights(layer)
    for gradient in trainable_gradients(layer, x):
        assert np.isfinite(gradient).all()


def test_bad_data_format_raises():
    with pytest.raises(ValueError, match="`data_format`"):
        StyleRecalibration(data_format="NCHW")


def srm_volume_numpy(x, cfc, gamma, beta, mean, variance, epsilon=1e-5, style_epsilon=1e-5):
    """The authors' SRM (eval mode) on a channels-last clip, in NumPy float64: the
    style statistics over all D*H*W positions, the std from the unbiased variance."""
    flat = x.astype("float64").reshape(x.shape[0], -1, x.shape[-1])
    style_mean = flat.mean(axis=1)
    std = np.sqrt(flat.var(axis=1, ddof=1) + style_epsilon)
    z = style_mean * cfc[:, 0] + std * cfc[:, 1]
    z = (z - mean) / np.sqrt(variance + epsilon) * gamma + beta
    gate = 1 / (1 + np.exp(-z))
    return x * gate[:, None, None, None, :], gate


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_matches_numpy_reference(data_format):
    layer = StyleRecalibration(data_format=data_format)
    # Scale 0.5 keeps the std's weight in the gate (the std is not ~1 everywhere).
    x = random_input((2, 3, 5, 4, 16), seed=3) * 0.5 + 0.2
    ours_x = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(ours_x)
    randomize_weights(layer)
    expected, expected_gate = srm_volume_numpy(x, *layer.get_weights())
    outputs, gate = layer(ours_x, return_attention=True)
    outputs = to_numpy(outputs)
    if data_format == "channels_first":
        outputs = np.moveaxis(outputs, 1, -1)
    np.testing.assert_allclose(to_numpy(gate), expected_gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)


def test_volume_std_divides_by_all_positions_minus_one():
    """The std of a clip is over D*H*W positions: a clip of one image repeated has a
    smaller unbiased std than the image (D(HW - 1) / (DHW - 1) times the variance)."""
    image = random_input((1, 3, 4, 2), seed=4)
    clip = np.repeat(image[:, None], 5, axis=1)
    layer = StyleRecalibration(epsilon=0.0)
    layer(clip)
    # cfc reads only the std; BN is the identity (mean 0, variance 1 - eps).
    cfc = np.zeros((2, 2), "float32")
    cfc[:, 1] = 1.0
    gamma, beta = np.ones(2, "float32"), np.zeros(2, "float32")
    layer.set_weights([cfc, gamma, beta, np.zeros(2, "float32"), np.full(2, 1 - 1e-5, "float32")])
    _, gate = layer(clip, return_attention=True)
    std = to_numpy(-np.log(1 / to_numpy(gate) - 1))[0]
    count = 3 * 4
    image_std = image.reshape(-1, 2).std(axis=0, ddof=1)
    np.testing.assert_allclose(
        std, image_std * np.sqrt(5 * (count - 1) / (5 * count - 1)), rtol=1e-4
    )
