"""Internal BatchNormalization: moving statistics that converge within a short run."""

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy
from test_layer_contract import CASES
from test_layer_contract import HEIGHT
from test_layer_contract import WIDTH

import keras_attention
from keras_attention.layers.base import BATCH_NORM_EPSILON
from keras_attention.layers.base import BATCH_NORM_MOMENTUM
from keras_attention.models import AttentionCNN


def has_batch_norm(case):
    layer = case.cls(**case.kwargs)
    layer.build((None, HEIGHT, WIDTH, case.channels))
    return any("moving_mean" in w.path for w in layer.weights)


BN_CASES = [case for case in CASES if has_batch_norm(case)]


def test_the_layers_with_batch_norm_are_found():
    names = {case.cls.__name__ for case in BN_CASES}
    assert {"SelectiveKernel", "SpatialGate", "CBAM", "NonLocalBlock"} <= names
    assert {"DualAttention", "ResidualAttention"} <= names


@pytest.mark.parametrize("case", BN_CASES, ids=lambda c: c.cls.__name__)
def test_inference_matches_training_after_150_steps(case):
    # 150 training-mode calls on one batch: momentum 0.9 leaves 0.9**150 = 1e-7
    # of the (randomised) initial statistics, Keras's default 0.99 would leave
    # 22%, which is what made short runs evaluate at chance.
    layer = case.cls(**case.kwargs)
    x = np.random.default_rng(0).normal(2.0, 0.3, size=(4, HEIGHT, WIDTH, case.channels))
    x = x.astype("float32")
    layer(x)
    randomize_weights(layer)
    for _ in range(150):
        trained = to_numpy(layer(x, training=True))
    inferred = to_numpy(layer(x, training=False))
    scale = np.abs(trained).max()
    np.testing.assert_allclose(inferred, trained, atol=0.02 * scale, rtol=0)


def test_models_use_the_same_momentum():
    model = AttentionCNN("sk")
    momenta = {
        layer.momentum
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert momenta == {BATCH_NORM_MOMENTUM}
    epsilons = {
        layer.epsilon
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert epsilons == {BATCH_NORM_EPSILON}


@pytest.mark.parametrize("case", BN_CASES, ids=lambda c: c.cls.__name__)
def test_layers_use_pytorch_epsilon(case):
    layer = case.cls(**case.kwargs)
    layer.build((None, HEIGHT, WIDTH, case.channels))
    norms = [s for s in layer._flatten_layers() if isinstance(s, keras.layers.BatchNormalization)]
    assert norms and {norm.epsilon for norm in norms} == {BATCH_NORM_EPSILON}


def test_batch_norm_follows_the_formula_with_epsilon_1e5():
    # Variances near 0 make epsilon visible: 1e-3 instead of 1e-5 would move the
    # output by ~5x here, far beyond float32 rounding.
    rng = np.random.default_rng(0)
    layer = keras_attention.layers.SpatialGate(kernel_size=3)
    layer.build((None, 5, 7, 8))
    (norm,) = [s for s in layer._flatten_layers() if isinstance(s, keras.layers.BatchNormalization)]
    gamma, beta = rng.uniform(0.5, 1.5, 1), rng.uniform(-0.5, 0.5, 1)
    mean, var = rng.uniform(-0.5, 0.5, 1), np.full(1, 4e-5)
    for weight, value in zip(norm.weights, (gamma, beta, mean, var)):
        weight.assign(value.astype("float32"))
    x = rng.normal(size=(3, 2, 2, 1)).astype("float32")
    expected = gamma * (x - mean) / np.sqrt(var + 1e-5) + beta
    np.testing.assert_allclose(to_numpy(norm(x, training=False)), expected, rtol=1e-5)
