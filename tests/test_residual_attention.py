"""Residual Attention module: (1 + M) * T, the mask's range, odd sizes, the resize weights."""

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import ResidualAttention
from keras_attention.ops import resize_linear


def random_input(shape=(2, 7, 9, 8), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def randomized(layer, x):
    layer(x)
    randomize_weights(layer)
    return layer


def run(units, x):
    for unit in units:
        x = unit(x, training=False)
    return x


@pytest.mark.parametrize("p", [0, 1])
def test_output_is_one_plus_mask_times_trunk(p):
    x = random_input()
    layer = randomized(ResidualAttention(depth=2, p=p, t=2, r=1), x)
    outputs, mask = layer(x, return_attention=True)
    mask = to_numpy(mask)
    assert mask.shape == x.shape
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert mask.std() > 1e-3  # not a constant gate
    trunk = run(layer.trunk_units, run(layer.pre_units, x))
    expected = run(layer.post_units, (1.0 + mask) * to_numpy(trunk))
    np.testing.assert_allclose(to_numpy(outputs), to_numpy(expected), rtol=1e-4, atol=1e-4)
    assert len(layer.pre_units) == len(layer.post_units) == p


def test_unit_counts_follow_the_arguments():
    layer = ResidualAttention(depth=3, p=2, t=1, r=2)
    layer.build((None, None, None, 8))
    assert len(layer.pre_units) == len(layer.post_units) == 2
    assert len(layer.trunk_units) == 1
    assert len(layer.down_units) == len(layer.up_units) == 6  # r per level, 3 levels


def test_filters_project_in_the_first_unit_only():
    layer = ResidualAttention(filters=16, p=1, t=1)
    outputs, mask = layer(random_input(), return_attention=True)
    assert tuple(outputs.shape) == tuple(mask.shape) == (2, 7, 9, 16)
    assert layer.pre_units[0].projection is not None
    units = layer.trunk_units + layer.down_units + layer.up_units + layer.post_units
    assert all(unit.projection is None for unit in units)


@pytest.mark.parametrize("size", [(9, 11), (1, 3), (5, 2), (13, 13)])
def test_odd_and_tiny_sizes_with_unknown_spatial_dims(size):
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, ResidualAttention(depth=3, t=1)(inputs, return_attention=True))
    outputs, mask = model(random_input((1, *size, 8)))
    assert tuple(outputs.shape) == tuple(mask.shape) == (1, *size, 8)
    assert np.isfinite(to_numpy(outputs)).all()


@pytest.mark.parametrize("in_size, out_size", [(3, 5), (4, 7), (2, 2), (5, 3), (1, 4)])
def test_resize_bilinear_matches_keras_resize(in_size, out_size):
    x = random_input((2, in_size, in_size + 1, 3))
    expected = keras.ops.image.resize(x, (out_size, out_size + 2), interpolation="bilinear")
    actual = resize_linear(x, (out_size, out_size + 2))
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"depth": 0}, "depth"),
        ({"p": -1}, "p"),
        ({"p": 1.0}, "p"),
        ({"t": 0}, "t"),
        ({"r": 0}, "r"),
        ({"filters": 0}, "filters"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ResidualAttention(**kwargs)


def test_projection_needs_a_pre_unit():
    with pytest.raises(ValueError, match="`p`"):
        ResidualAttention(filters=16, p=0)(random_input())


# Volumes and clips (issue 27): 3x3x3 pooling of every axis, trilinear up, 1x1x1 / 3x3x3 convs.


def torch_residual_attention(layer, x):
    """The module in PyTorch from the layer's weights (inference BN), NCDHW in and out.

    Max-pooling pads the way Keras's "same" does (the extra row after, with
    -inf), and the way up is `interpolate(mode="trilinear", align_corners=False)`.
    """
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional

    def weight(w):
        return torch.tensor(to_numpy(w))

    def conv(layer_, t):
        kernel = weight(layer_.kernel).permute(4, 3, 0, 1, 2)
        bias = weight(layer_.bias) if layer_.use_bias else None
        return functional.conv3d(t, kernel, bias, padding=kernel.shape[-1] // 2)

    def norm(layer_, t):
        return functional.batch_norm(
            t,
            weight(layer_.moving_mean),
            weight(layer_.moving_variance),
            weight(layer_.gamma),
            weight(layer_.beta),
            eps=layer_.epsilon,
        )

    def unit(u, t):
        activated = functional.relu(norm(u.norm1, t))
        shortcut = t if u.projection is None else conv(u.projection, activated)
        h = conv(u.conv1, activated)
        h = conv(u.conv2, functional.relu(norm(u.norm2, h)))
        return conv(u.conv3, functional.relu(norm(u.norm3, h))) + shortcut

    def run_units(units, t):
        for u in units:
            t = unit(u, t)
        return t

    def max_pool(t):
        pads = []
        for size in reversed(t.shape[2:]):
            total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
            pads += [total // 2, total - total // 2]
        return functional.max_pool3d(functional.pad(t, pads, value=-np.inf), 3, stride=2)

    def up(t, like):
        return functional.interpolate(
            t, size=tuple(like.shape[2:]), mode="trilinear", align_corners=False
        )

    r = layer.r
    with torch.no_grad():
        t = run_units(layer.pre_units, torch.tensor(np.moveaxis(x, -1, 1)))
        trunk = run_units(layer.trunk_units, t)
        skips, h = [], t
        for level in range(layer.depth):
            h = run_units(layer.down_units[level * r : (level + 1) * r], max_pool(h))
            skips.append(h)
        for level in reversed(range(layer.depth)):
            if level < layer.depth - 1:
                h = up(h, skips[level]) + skips[level]
            h = run_units(layer.up_units[level * r : (level + 1) * r], h)
        h = up(h, t)
        h = conv(layer.mask_conv1, functional.relu(norm(layer.mask_norm1, h)))
        h = conv(layer.mask_conv2, functional.relu(norm(layer.mask_norm2, h)))
        mask = torch.sigmoid(h)
        outputs = run_units(layer.post_units, (1 + mask) * trunk)
    return np.moveaxis(outputs.numpy(), 1, -1), np.moveaxis(mask.numpy(), 1, -1)


@pytest.mark.parametrize("shape", [(2, 4, 6, 5, 8), (1, 7, 5, 9, 8)])
def test_volume_matches_torch_pooling_and_trilinear_resize(shape):
    x = random_input(shape, seed=1)
    layer = randomized(ResidualAttention(filters=12, depth=2, p=1, t=1, r=1), x)
    assert tuple(layer.mask_conv1.kernel.shape) == (1, 1, 1, 12, 12)
    assert tuple(layer.trunk_units[0].conv2.kernel.shape) == (3, 3, 3, 3, 3)
    expected, expected_mask = torch_residual_attention(layer, x)
    outputs, mask = layer(x, return_attention=True)
    assert tuple(outputs.shape) == tuple(mask.shape) == (*shape[:-1], 12)
    assert to_numpy(mask).std() > 1e-3  # not a constant gate
    np.testing.assert_allclose(to_numpy(mask), expected_mask, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-4)


def test_volume_odd_and_tiny_sizes_with_unknown_spatial_dims():
    inputs = keras.Input((None, None, None, 8))
    model = keras.Model(inputs, ResidualAttention(depth=3, t=1)(inputs, return_attention=True))
    for size in [(1, 3, 2), (5, 2, 7)]:
        outputs, mask = model(random_input((1, *size, 8)))
        assert tuple(outputs.shape) == tuple(mask.shape) == (1, *size, 8)
        assert np.isfinite(to_numpy(outputs)).all()
