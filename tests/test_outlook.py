"""Outlook attention: timm's module with the same weights, and a NumPy window-by-window reference."""

import math

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import OutlookAttention


def random_input(shape=(2, 5, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def randomized(layer, x):
    layer(x)
    randomize_weights(layer)
    return layer


def numpy_reference(x, layer):
    """Window by window in float64: centres every `stride` pixels, each
    window slot j receives sum_i a[j, i] v[slot i]; slots outside the map read
    zeros and are dropped; overlapping windows add up at a pixel."""
    x = x.astype("float64")
    wv = to_numpy(layer.value.kernel).astype("float64")
    bv = to_numpy(layer.value.bias) if layer.qkv_bias else 0.0
    wa, ba = (to_numpy(w).astype("float64") for w in (layer.attention.kernel, layer.attention.bias))
    wp, bp = (
        to_numpy(w).astype("float64") for w in (layer.projection.kernel, layer.projection.bias)
    )
    k, s, heads = layer.kernel_size, layer.stride, layer.num_heads
    pad = k // 2
    batch, height, width, channels = x.shape
    depth = channels // heads
    rows, columns = math.ceil(height / s), math.ceil(width / s)
    values = x @ wv + bv
    folded = np.zeros_like(x)
    weights = np.zeros((batch, rows, columns, heads, k * k, k * k))
    for a in range(rows):
        for b in range(columns):
            centre = x[:, a * s : a * s + s, b * s : b * s + s].mean(
                axis=(1, 2)
            )  # partial: valid only
            logits = (centre @ wa + ba).reshape(batch, heads, k * k, k * k) / math.sqrt(depth)
            w = np.exp(logits - logits.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
            weights[:, a, b] = w
            pixels = [(a * s + i - pad, b * s + j - pad) for i in range(k) for j in range(k)]
            window = np.zeros((batch, k * k, heads, depth))
            for slot, (r, c) in enumerate(pixels):
                if 0 <= r < height and 0 <= c < width:
                    window[:, slot] = values[:, r, c].reshape(batch, heads, depth)
            mixed = np.einsum("bgji,bigd->bjgd", w, window)
            for slot, (r, c) in enumerate(pixels):
                if 0 <= r < height and 0 <= c < width:
                    folded[:, r, c] += mixed[:, slot].reshape(batch, channels)
    return folded @ wp + bp, weights


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((2, 5, 7, 16), {"num_heads": 2}),
        ((1, 5, 7, 16), {"num_heads": 4, "stride": 2, "qkv_bias": True}),
        ((1, 7, 8, 8), {"num_heads": 1, "kernel_size": 5, "stride": 3}),
    ],
)
def test_matches_numpy_reference(shape, kwargs):
    x = random_input(shape)
    layer = randomized(OutlookAttention(**kwargs), x)
    expected, expected_weights = numpy_reference(x, layer)
    outputs, weights = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(weights), expected_weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(weights).sum(-1), 1.0, rtol=1e-5)  # over source slots


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((2, 5, 7, 16), {"num_heads": 2}),
        ((2, 6, 9, 16), {"num_heads": 4, "stride": 2, "qkv_bias": True}),
        ((1, 7, 5, 8), {"num_heads": 2, "kernel_size": 5, "stride": 3}),
    ],
)
def test_matches_timm_with_the_same_weights(shape, kwargs):
    import torch
    from timm_import import import_timm

    volo = import_timm().models.volo
    x = random_input(shape)
    layer = randomized(OutlookAttention(**kwargs), x)
    k = layer.kernel_size
    module = volo.OutlookAttention(
        shape[-1], layer.num_heads, k, padding=k // 2, stride=layer.stride, qkv_bias=layer.qkv_bias
    ).eval()
    dense = {"v": layer.value, "attn": layer.attention, "proj": layer.projection}
    state = {}
    for name, sublayer in dense.items():
        state[f"{name}.weight"] = torch.tensor(to_numpy(sublayer.kernel).T.copy())
        if sublayer.use_bias:
            state[f"{name}.bias"] = torch.tensor(to_numpy(sublayer.bias))
    module.load_state_dict(state)
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()  # timm's input is (B, H, W, C)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_parameter_count_for_256_channels():
    layer = OutlookAttention(num_heads=8)
    layer.build((None, 8, 8, 256))
    # value 256x256 (no bias), attention 256 -> 8 * 9 * 9 (bias), projection 256x256 + 256.
    assert layer.count_params() == 256 * 256 + (256 + 1) * 648 + 256 * 256 + 256 == 297864


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="`num_heads`"):
        OutlookAttention(num_heads=3)(random_input())


def test_a_single_centre_window_sees_only_its_neighbourhood():
    x = random_input((1, 7, 7, 8))
    layer = randomized(OutlookAttention(num_heads=1), x)
    bumped = x.copy()
    bumped[0, 3, 3] += 3.0
    changed = np.abs(to_numpy(layer(bumped)) - to_numpy(layer(x))).max(-1)[0] > 1e-6
    # A pixel reaches the windows centred within 1 and those windows' slots: 2 away.
    rows, cols = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    np.testing.assert_array_equal(changed, (abs(rows - 3) <= 2) & (abs(cols - 3) <= 2))
