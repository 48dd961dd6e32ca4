"""SimAM: the authors' energy formula, no weights, float32 energies."""

import keras
import numpy as np
import pytest
from helpers import to_numpy

from keras_attention.layers import SimAM


def random_input(shape=(2, 5, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def simam_reference(x, e_lambda=1e-4):
    """(B, H, W, C) or (B, D, H, W, C): the authors' forward pass, variance over n - 1.

    n counts every position of a channel: H*W, or D*H*W in a volume.
    """
    axes = tuple(range(1, x.ndim - 1))
    n = int(np.prod([x.shape[a] for a in axes])) - 1
    squared = (x - x.mean(axis=axes, keepdims=True)) ** 2
    energy = squared / (4 * (squared.sum(axis=axes, keepdims=True) / n + e_lambda)) + 0.5
    return x / (1 + np.exp(-energy))


def test_has_no_weights():
    layer = SimAM()
    layer.build((None, 7, 7, 256))
    assert layer.count_params() == 0 and not layer.weights


@pytest.mark.parametrize("e_lambda", [1e-4, 0.1])
def test_matches_the_energy_formula(e_lambda):
    x = random_input()
    outputs, gate = SimAM(e_lambda=e_lambda)(x, return_attention=True)
    np.testing.assert_allclose(
        to_numpy(outputs), simam_reference(x, e_lambda), rtol=1e-5, atol=1e-6
    )
    # The minimal energy is 0.5 + a non-negative term: every gate is at least sigmoid(0.5).
    assert to_numpy(gate).min() >= 1 / (1 + np.exp(-0.5)) - 1e-6


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_energy_is_over_every_position_of_the_volume(data_format):
    x = random_input((2, 3, 4, 5, 6), seed=1)
    layer = SimAM(e_lambda=0.01, data_format=data_format)
    if data_format == "channels_first":
        outputs, gate = layer(np.moveaxis(x, -1, 1), return_attention=True)
        outputs, gate = np.moveaxis(to_numpy(outputs), 1, -1), np.moveaxis(to_numpy(gate), 1, -1)
    else:
        outputs, gate = (to_numpy(t) for t in layer(x, return_attention=True))
    expected = simam_reference(x, 0.01)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    assert gate.shape == x.shape
    # Not the 2-D form frame by frame: the statistics span the depth too.
    frame_by_frame = np.stack([simam_reference(x[:, d], 0.01) for d in range(3)], axis=1)
    assert np.abs(frame_by_frame - expected).max() > 1e-2


def test_distinctive_positions_get_larger_gates():
    x = np.zeros((1, 4, 4, 1), "float32")
    x[0, 1, 2, 0] = 3.0  # one neuron stands out from its channel
    _, gate = SimAM()(x, return_attention=True)
    gate = to_numpy(gate)[0, :, :, 0]
    assert gate[1, 2] == gate.max() and np.sum(gate == gate.max()) == 1


def test_one_pixel_map_is_finite():
    # The authors' code divides by H*W - 1 = 0 here.
    x = random_input((2, 1, 1, 4))
    outputs = to_numpy(SimAM()(x))
    np.testing.assert_allclose(outputs, x / (1 + np.exp(-0.5)), rtol=1e-6)


def test_float16_energy_does_not_overflow():
    # Squared deviations of x50 inputs summed over 35 positions exceed float16's range.
    x = random_input((2, 5, 7, 4)) * 200.0
    outputs = SimAM(dtype="mixed_float16")(x)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
    np.testing.assert_allclose(to_numpy(outputs), simam_reference(x), rtol=2e-3, atol=1e-1)


@pytest.mark.parametrize("e_lambda", [0, -1e-4, "1e-4", True])
def test_e_lambda_must_be_positive(e_lambda):
    with pytest.raises(ValueError, match="`e_lambda`"):
        SimAM(e_lambda=e_lambda)
