"""NonLocalBlock: identity at init, NumPy references of every mode, odd sizes, paths agree."""

import functools

import keras
import numpy as np
import pytest
from helpers import images
from helpers import randomized_layer
from helpers import to_numpy
from helpers import trainable_gradients

from keras_attention.layers import NonLocalBlock
from keras_attention.layers.spatial.non_local import MODES

randomized = functools.partial(randomized_layer, NonLocalBlock)


def weights_of(layer):
    return {v.path.split("/", 1)[1]: to_numpy(v).astype("float64") for v in layer.weights}


def conv(x, w, name):
    return x @ w[f"{name}/kernel"][0, 0] + w.get(f"{name}/bias", 0.0)


def max_pool_same(t):
    """2x2/2 max-pool, 'same' padding: odd sizes keep their last row/column."""
    batch, height, width, channels = t.shape
    padded = np.full((batch, height + height % 2, width + width % 2, channels), -np.inf)
    padded[:, :height, :width] = t
    h, w = padded.shape[1] // 2, padded.shape[2] // 2
    return padded.reshape(batch, h, 2, w, 2, channels).max(axis=(2, 4))


def softmax(e):
    e = np.exp(e - e.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference(layer, x):
    """The block in inference mode from its own weights, in float64: (outputs, f / C(x))."""
    w = weights_of(layer)
    x = x.astype("float64")
    batch, height, width, _ = x.shape
    pool = max_pool_same if layer.sub_sample else (lambda t: t)

    def flat(t):
        return t.reshape(batch, -1, t.shape[-1])

    g = flat(pool(conv(x, w, "g")))
    if layer.mode == "gaussian":
        theta, phi = flat(x), flat(pool(x))
    else:
        theta, phi = flat(conv(x, w, "theta")), flat(pool(conv(x, w, "phi")))
    count = phi.shape[1]
    if layer.mode == "concatenation":
        pairs = np.concatenate(
            [
                np.broadcast_to(
                    theta[:, :, None], theta.shape[:2] + phi.shape[1:2] + theta.shape[2:]
                ),
                np.broadcast_to(phi[:, None], theta.shape[:2] + phi.shape[1:]),
            ],
            axis=-1,
        )  # (batch, queries, keys, 2C'): the paper's [theta_i, phi_j]
        f = np.maximum(pairs @ w["concat_kernel"][:, 0] + w["concat_bias"][0], 0.0) / count
    elif layer.mode == "dot_product":
        f = theta @ phi.transpose(0, 2, 1) / count
    else:
        f = softmax(theta @ phi.transpose(0, 2, 1))
    y = conv((f @ g).reshape(batch, height, width, -1), w, "w")
    if layer.use_bn:
        scale = w["bn/gamma"] / np.sqrt(w["bn/moving_variance"] + layer.bn.epsilon)
        y = (y - w["bn/moving_mean"]) * scale + w["bn/beta"]
    return y + x, f


@pytest.mark.parametrize("use_bn", [True, False])
@pytest.mark.parametrize("sub_sample", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_identity_at_initialisation(mode, sub_sample, use_bn):
    layer = NonLocalBlock(mode=mode, sub_sample=sub_sample, use_bn=use_bn)
    x = images((2, 5, 7, 8))
    for training in (False, True):
        np.testing.assert_array_equal(to_numpy(layer(x, training=training)), x)
    np.testing.assert_array_equal(to_numpy(layer(x, return_attention=True)[0]), x)


@pytest.mark.parametrize("sub_sample", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_matches_numpy_reference_on_odd_sizes(mode, sub_sample):
    x = images((2, 5, 7, 8), seed=1)
    layer = randomized(x.shape, mode=mode, sub_sample=sub_sample)
    expected, expected_f = reference(layer, x)
    outputs, attention = layer(x, return_attention=True)
    keys = 3 * 4 if sub_sample else 5 * 7
    assert tuple(attention.shape) == (2, 35, keys)
    np.testing.assert_allclose(to_numpy(attention), expected_f, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)


def test_without_batch_norm_matches_reference():
    x = images((1, 4, 6, 8), seed=2)
    layer = randomized(x.shape, mode="dot_product", use_bn=False, inter_channels=3)
    assert tuple(layer.theta.kernel.shape) == (1, 1, 8, 3)
    np.testing.assert_allclose(to_numpy(layer(x)), reference(layer, x)[0], rtol=1e-4, atol=1e-5)


def test_default_inter_channels_is_half():
    layer = NonLocalBlock()
    layer(images((1, 4, 4, 16)))
    for name in ("theta", "phi", "g"):
        assert tuple(getattr(layer, name).kernel.shape) == (1, 1, 16, 8)


@pytest.mark.parametrize("sub_sample", [True, False])
def test_fused_and_explicit_paths_agree(sub_sample):
    x = images((2, 7, 5, 8), scale=3.0, seed=3)
    layer = randomized(x.shape, sub_sample=sub_sample)
    assert reference(layer, x)[1].max() > 0.9  # peaked rows
    fused = to_numpy(layer(x))
    explicit = to_numpy(layer(x, return_attention=True)[0])
    np.testing.assert_allclose(fused, explicit, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("use_bn", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_trains_every_weight(mode, use_bn):
    # The bias rule: a bias only where it can change the output. A redundant
    # one (e.g. phi's under the softmax) gets float rounding noise, ~1e-6.
    layer = randomized((2, 5, 6, 8), mode=mode, use_bn=use_bn)
    gradients = trainable_gradients(layer, images((2, 5, 6, 8), seed=4))
    largest = max(np.abs(g).max() for g in gradients)
    for weight, gradient in zip(layer.trainable_weights, gradients):
        assert np.abs(gradient).max() > 1e-3 * largest, weight.path


@pytest.mark.parametrize("mode", ["embedded_gaussian", "gaussian"])
def test_mixed_float16_large_energies_stay_finite(mode):
    x = images((2, 6, 10, 32), scale=50.0, seed=5)
    layer = randomized(x.shape, mode=mode, sub_sample=False, dtype="mixed_float16")
    w = weights_of(layer)
    flat = x.reshape(2, -1, 32).astype("float64")
    query = flat if mode == "gaussian" else conv(flat, w, "theta")
    key = flat if mode == "gaussian" else conv(flat, w, "phi")
    assert np.abs(query @ key.transpose(0, 2, 1)).max() > np.finfo("float16").max
    fused = layer(x)
    explicit, attention = layer(x, return_attention=True)
    assert keras.backend.standardize_dtype(fused.dtype) == "float16"
    for tensor in (fused, explicit, attention):
        assert np.isfinite(to_numpy(tensor)).all()


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="`mode`") as error:
        NonLocalBlock(mode="softmax")
    assert all(mode in str(error.value) for mode in MODES)


@pytest.mark.parametrize(
    "name, value",
    [("inter_channels", 0), ("inter_channels", 2.0), ("sub_sample", "yes"), ("use_bn", None)],
)
def test_bad_arguments_raise(name, value):
    with pytest.raises(ValueError, match=f"`{name}`"):
        NonLocalBlock(**{name: value})
