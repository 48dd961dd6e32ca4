"""Axial attention against a NumPy reference of axial-deeplab's blocks (inference), span handling."""

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import AxialAttention

EPS = 1e-5


def random_input(shape=(2, 5, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def randomized(layer, x):
    layer(x)
    randomize_weights(layer)
    return layer


def bn(x, norm, axis=-1):
    shape = [1] * x.ndim
    shape[axis] = -1

    def p(w):
        return to_numpy(w).astype("float64").reshape(shape)

    scale = p(norm.gamma) / np.sqrt(p(norm.moving_variance) + EPS)
    return (x - p(norm.moving_mean)) * scale + p(norm.beta)


def block_reference(x, layer, block):
    """One block along axis 2 of (batch, lines, L, C), written index by index:
    logits[i, j] = BN(q_i.k_j) + BN(q_i.r^q[i-j+span-1]) + BN(k_j.r^k[j-i+span-1])."""
    heads = layer.num_heads
    batch, lines, length, channels = x.shape
    d = channels // heads
    span = layer._spans[block]
    qkv = bn(x @ to_numpy(layer.qkv[block].kernel), layer.qkv_bn[block])
    qkv = qkv.reshape(batch, lines, length, heads, 2 * d)
    q, k, v = qkv[..., : d // 2], qkv[..., d // 2 : d], qkv[..., d:]
    r = to_numpy(layer.relative[block]).astype("float64")
    rq, rk, rv = r[: d // 2], r[d // 2 : d], r[d:]
    terms = np.zeros((batch, 3, heads, lines, length, length))
    for i in range(length):
        for j in range(length):
            terms[:, 0, :, :, i, j] = np.einsum("bngc,bngc->bgn", q[:, :, i], k[:, :, j])
            terms[:, 1, :, :, i, j] = np.einsum("bngc,c->bgn", q[:, :, i], rq[:, i - j + span - 1])
            terms[:, 2, :, :, i, j] = np.einsum("bngc,c->bgn", k[:, :, j], rk[:, j - i + span - 1])
    terms = bn(
        terms.reshape(batch, 3 * heads, lines, length, length), layer.similarity_bn[block], 1
    )
    logits = terms.reshape(batch, 3, heads, lines, length, length).sum(1)
    a = np.exp(logits - logits.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)  # over keys j
    content = np.einsum("bgnij,bnjgc->bnigc", a, v)
    position = np.zeros_like(content)
    for i in range(length):
        for j in range(length):
            position[:, :, i] += (
                a[:, :, :, i, j].transpose(0, 2, 1)[..., None] * rv[:, i - j + span - 1]
            )
    stacked = np.stack([content, position], -1).reshape(batch, lines, length, 2 * channels)
    out = bn(stacked, layer.output_bn[block]).reshape(batch, lines, length, channels, 2).sum(-1)
    return out, a.transpose(0, 2, 1, 3, 4)


def numpy_reference(x, layer):
    x = x.astype("float64")
    columns, height = block_reference(x.transpose(0, 2, 1, 3), layer, 0)
    out, width = block_reference(columns.transpose(0, 2, 1, 3), layer, 1)
    return out, height, width


@pytest.mark.parametrize(
    "shape, span",
    [((2, 5, 7, 16), (5, 7)), ((1, 4, 6, 16), (7, 9)), ((1, 3, 3, 8), 3)],
)
def test_matches_numpy_reference(shape, span):
    x = random_input(shape)
    layer = randomized(AxialAttention(span=span, num_heads=2), x)
    expected, height, width = numpy_reference(x, layer)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_numpy(attention["height"]), height, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(attention["width"]), width, rtol=1e-4, atol=1e-6)
    b, h, w = shape[:3]
    assert tuple(attention["height"].shape) == (b, w, 2, h, h)
    np.testing.assert_allclose(to_numpy(attention["width"]).sum(-1), 1.0, rtol=1e-5)


def test_a_shorter_axis_uses_the_centre_of_the_table():
    """span 9 on a 4-long axis equals span 4 with the table's central 7 offsets."""
    x = random_input((1, 4, 4, 16))
    wide = randomized(AxialAttention(span=9, num_heads=2), x)
    narrow = AxialAttention(span=4, num_heads=2)
    narrow(x)
    weights = [w.copy() for w in wide.get_weights()]
    for i, w in enumerate(weights):
        if w.shape[-1] == 2 * 9 - 1:
            weights[i] = w[:, 9 - 4 : 9 + 3]
    narrow.set_weights(weights)
    np.testing.assert_allclose(to_numpy(narrow(x)), to_numpy(wide(x)), rtol=1e-5, atol=1e-6)


def test_parameter_count_for_256_channels():
    layer = AxialAttention(span=56, num_heads=8)
    layer.build((None, 56, 56, 256))
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    # Two of axial-deeplab's AxialAttention(256, 256, groups=8, kernel_size=56): per block
    # qkv 256*512, BN 2*512 + 2*24 + 2*512, relative 64 x 111.
    assert trainable == 2 * (256 * 512 + 1024 + 48 + 1024 + 64 * 111) == 280544


def test_longer_axis_than_span_raises():
    layer = AxialAttention(span=(6, 8), num_heads=2)
    with pytest.raises(ValueError, match="span"):
        layer(random_input((1, 7, 8, 16)))
    with pytest.raises(ValueError, match="span"):
        AxialAttention(span=4, num_heads=2)(keras.Input((4, 5, 16)))


@pytest.mark.parametrize("span", [0, (3,), (3, 0), "8", (2.0, 3), True])
def test_bad_span_raises(span):
    with pytest.raises(ValueError, match="`span`"):
        AxialAttention(span=span)


def test_heads_must_leave_even_head_size():
    with pytest.raises(ValueError, match="`num_heads`"):
        AxialAttention(span=8, num_heads=16)(random_input((1, 4, 4, 16)))


def test_span_pair_round_trips_in_config():
    layer = AxialAttention(span=(6, 10), num_heads=2)
    assert AxialAttention.from_config(layer.get_config()).span == (6, 10)
