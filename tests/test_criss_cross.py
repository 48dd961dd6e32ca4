"""Criss-cross attention against the naive masked (HW)^2 softmax, and its receptive field."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import CrissCrossAttention


def random_input(shape=(2, 4, 6, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def randomized(layer, x):
    layer(x)
    randomize_weights(layer)
    return layer


def naive_reference(x, layer):
    """One pass in float64, the slow way: a softmax over all H*W positions
    with every position off the pixel's row and column masked out."""
    wq, bq, wk, bk, wv, bv = (
        to_numpy(w).astype("float64")
        for conv in (layer.query, layer.key, layer.value)
        for w in (conv.kernel, conv.bias)
    )
    gamma = float(to_numpy(layer.gamma))
    batch, height, width, channels = x.shape
    flat = x.reshape(batch, height * width, channels).astype("float64")
    q = flat @ wq.reshape(channels, -1) + bq
    k = flat @ wk.reshape(channels, -1) + bk
    v = flat @ wv.reshape(channels, -1) + bv
    rows, cols = np.divmod(np.arange(height * width), width)
    cross = (rows[:, None] == rows[None, :]) | (cols[:, None] == cols[None, :])
    energy = np.where(cross, q @ k.transpose(0, 2, 1), -np.inf)
    attention = np.exp(energy - energy.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    outputs = (gamma * attention @ v + flat).reshape(x.shape)
    return outputs, attention.reshape(batch, height, width, height, width)


def cross_layout(full):
    """(B, H, W, H, W) full weights -> the layer's (B, H, W, H + W) layout."""
    height, width = full.shape[1:3]
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    # NumPy puts the index dims first when a slice separates them.
    column = np.moveaxis(full[:, i, j, :, j], 2, 0)  # (B, H, W, H): weights of (k, j)
    row = full[:, i, j, i, :]  # (B, H, W, W): weights of (i, k)
    column[:, i, j, i] = 0.0  # the centre is counted in the row part
    return np.concatenate([column, row], axis=-1)


@pytest.mark.parametrize("shape", [(2, 4, 6, 16), (1, 1, 5, 16), (1, 5, 1, 16)])
def test_one_pass_matches_naive_masked_softmax(shape):
    x = random_input(shape)
    layer = randomized(CrissCrossAttention(reduction=4, recurrence=1), x)
    expected, full = naive_reference(x, layer)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    height, width = shape[1:3]
    assert tuple(attention.shape) == (shape[0], height, width, height + width)
    np.testing.assert_allclose(to_numpy(attention), cross_layout(full), rtol=1e-4, atol=1e-6)


def test_recurrence_reapplies_the_same_weights():
    x = random_input()
    layer = randomized(CrissCrossAttention(reduction=4, recurrence=2), x)
    once, _ = naive_reference(x, layer)
    twice, _ = naive_reference(once.astype("float32"), layer)
    np.testing.assert_allclose(to_numpy(layer(x)), twice, rtol=1e-4, atol=1e-4)


def test_recurrence_adds_no_weights():
    counts = set()
    for recurrence in (1, 2, 3):
        layer = CrissCrossAttention(reduction=4, recurrence=recurrence)
        layer.build((None, None, None, 16))
        counts.add(layer.count_params())
    # query and key 16 -> 4, value 16 -> 16 (with biases), and gamma.
    assert counts == {2 * (16 * 4 + 4) + 16 * 16 + 16 + 1}


def test_identity_at_initialisation():
    x = random_input()
    layer = CrissCrossAttention(reduction=4)
    np.testing.assert_array_equal(to_numpy(layer(x)), x)
    assert layer.gamma.path.endswith("gamma")


def soft_layer(recurrence, x):
    """Random weights with small query/key kernels, so that no softmax saturates
    and every dependency shows as a clear change."""
    layer = randomized(CrissCrossAttention(reduction=4, recurrence=recurrence), x)
    for conv in (layer.query, layer.key):
        conv.kernel.assign(to_numpy(conv.kernel) * 0.2)
    layer.gamma.assign(1.0)
    return layer


def changed_pixels(layer, x, pixel):
    bumped = x.copy()
    bumped[0, pixel[0], pixel[1], :] += 3.0
    difference = np.abs(to_numpy(layer(bumped)) - to_numpy(layer(x))).max(axis=-1)[0]
    assert np.all((difference < 1e-6) | (difference > 1e-3)), "ambiguous change"
    return difference > 1e-3


def test_one_pass_sees_only_the_row_and_the_column():
    x = random_input((1, 5, 7, 16))
    layer = soft_layer(1, x)
    rows, cols = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
    for pixel in ((2, 3), (0, 6)):
        cross = (rows == pixel[0]) | (cols == pixel[1])
        np.testing.assert_array_equal(changed_pixels(layer, x, pixel), cross)


def test_two_passes_see_the_whole_image():
    x = random_input((1, 5, 7, 16))
    layer = soft_layer(2, x)
    for pixel in ((2, 3), (0, 6)):
        assert changed_pixels(layer, x, pixel).all()


def test_channels_first_attention_layout():
    x = random_input()
    last = randomized(CrissCrossAttention(reduction=4), x)
    first = CrissCrossAttention(reduction=4, data_format="channels_first")
    first(x.transpose(0, 3, 1, 2))
    first.set_weights(last.get_weights())
    _, expected = last(x, return_attention=True)
    _, attention = first(x.transpose(0, 3, 1, 2), return_attention=True)
    np.testing.assert_allclose(to_numpy(attention), to_numpy(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"reduction": 0}, "reduction"),
        ({"recurrence": 0}, "recurrence"),
        ({"recurrence": 1.5}, "recurrence"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        CrissCrossAttention(**kwargs)


# Volumes and clips (issue 27): the 3-D cross of depth line, column and row.


def cross_reference_3d(x, layer):
    """One 3-D pass in float64, voxel by voxel, from the layer's own weights.

    Voxel (z, i, j) attends to the D + H + W - 2 voxels (k, i, j) for k != z,
    (z, k, j) for k != i and (z, i, k) for every k (the voxel itself once),
    with one softmax. Returns the outputs and the weights in the layer's
    (depth line, column, row) layout, the voxel's own slot zero in the first two.
    """
    wq, bq, wk, bk, wv, bv = (
        to_numpy(w).astype("float64")
        for conv in (layer.query, layer.key, layer.value)
        for w in (conv.kernel, conv.bias)
    )
    gamma = float(to_numpy(layer.gamma))
    batch, depth, height, width, channels = x.shape
    x = x.astype("float64")
    q = x @ wq.reshape(channels, -1) + bq
    k = x @ wk.reshape(channels, -1) + bk
    v = x @ wv.reshape(channels, -1) + bv
    outputs = x.copy()
    attention = np.zeros((batch, depth, height, width, depth + height + width))
    for b in range(batch):
        for z in range(depth):
            for i in range(height):
                for j in range(width):
                    cross = [(n, i, j) for n in range(depth) if n != z]
                    cross += [(z, n, j) for n in range(height) if n != i]
                    cross += [(z, i, n) for n in range(width)]
                    energy = np.array([q[b, z, i, j] @ k[(b, *voxel)] for voxel in cross])
                    weights = np.exp(energy - energy.max())
                    weights /= weights.sum()
                    outputs[b, z, i, j] += gamma * sum(
                        w * v[(b, *voxel)] for w, voxel in zip(weights, cross)
                    )
                    slots = [n for n in range(depth) if n != z]
                    slots += [depth + n for n in range(height) if n != i]
                    slots += [depth + height + n for n in range(width)]
                    attention[b, z, i, j, slots] = weights
    return outputs, attention


@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 16), (1, 1, 3, 4, 16), (1, 4, 1, 1, 16)])
def test_volume_one_pass_matches_voxel_by_voxel_reference(shape):
    x = random_input(shape, seed=1)
    layer = randomized(CrissCrossAttention(reduction=4, recurrence=1), x)
    assert tuple(layer.query.kernel.shape) == (1, 1, 1, 16, 4)
    expected, expected_attention = cross_reference_3d(x, layer)
    outputs, attention = layer(x, return_attention=True)
    depth, height, width = shape[1:4]
    assert tuple(attention.shape) == (*shape[:4], depth + height + width)
    np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(attention).sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    # Without the weights formed, the same outputs.
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)


def test_volume_recurrence_reapplies_the_same_weights():
    x = random_input((2, 3, 4, 5, 16), seed=2)
    layer = randomized(CrissCrossAttention(reduction=4, recurrence=2), x)
    once, _ = cross_reference_3d(x, layer)
    twice, attention = cross_reference_3d(once.astype("float32"), layer)
    outputs, last = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), twice, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_numpy(last), attention, rtol=1e-3, atol=1e-5)


def test_volume_channels_first_matches_channels_last():
    x = random_input((2, 3, 4, 5, 16), seed=3)
    last = randomized(CrissCrossAttention(reduction=4), x)
    first = CrissCrossAttention(reduction=4, data_format="channels_first")
    first(np.moveaxis(x, -1, 1))
    first.set_weights(last.get_weights())
    expected, expected_attention = last(x, return_attention=True)
    outputs, attention = first(np.moveaxis(x, -1, 1), return_attention=True)
    np.testing.assert_allclose(
        np.moveaxis(to_numpy(outputs), 1, -1), to_numpy(expected), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        to_numpy(attention), to_numpy(expected_attention), rtol=1e-5, atol=1e-6
    )


def changed_voxels(layer, x, voxel):
    bumped = x.copy()
    bumped[(0, *voxel)] += 3.0
    difference = np.abs(to_numpy(layer(bumped)) - to_numpy(layer(x))).max(axis=-1)[0]
    assert np.all((difference < 1e-6) | (difference > 1e-4)), "ambiguous change"
    return difference > 1e-4


@pytest.mark.parametrize("recurrence", [1, 2, 3])
def test_volume_receptive_field_grows_by_one_axis_a_pass(recurrence):
    """One pass reaches the voxel's three lines, two its three planes, three the volume."""
    x = random_input((1, 3, 4, 5, 16), seed=4)
    layer = randomized(CrissCrossAttention(reduction=4, recurrence=recurrence), x)
    for conv in (layer.query, layer.key):
        conv.kernel.assign(to_numpy(conv.kernel) * 0.2)
    layer.gamma.assign(1.0)
    z, i, j = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing="ij")
    voxel = (1, 2, 3)
    shared = (z == voxel[0]).astype(int) + (i == voxel[1]) + (j == voxel[2])
    # A voxel shares 2 coordinates with those on its lines, 1 with its planes'.
    np.testing.assert_array_equal(changed_voxels(layer, x, voxel), shared >= 3 - recurrence)
