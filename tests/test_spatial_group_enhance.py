"""SpatialGroupEnhance: the authors' forward pass, sigmoid(1) at init, groups stay apart."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import SpatialGroupEnhance

torch = pytest.importorskip("torch")
from torch_reference import nchw
from torch_reference import nhwc_numpy
from torch_reference import tensor


def sge_reference(x, groups, weight, bias):
    """implus/PytorchInsight's SGE: unbiased std over H*W, epsilon added to the std.

    Written for any number of spatial axes: (b, c, h, w) as released, or
    (b, c, d, h, w) with the mean and the std over every position.
    """
    b, c, *spatial = x.shape
    ones = (1,) * len(spatial)
    axes = tuple(range(2, 2 + len(spatial)))
    x = x.reshape(b * groups, -1, *spatial)
    similarity = (x * x.mean(dim=axes, keepdim=True)).sum(dim=1, keepdim=True)
    t = similarity.reshape(b * groups, -1)
    t = t - t.mean(dim=1, keepdim=True)
    t = t / (t.std(dim=1, keepdim=True) + 1e-5)
    t = t.reshape(b, groups, *spatial) * weight.reshape(1, -1, *ones) + bias.reshape(1, -1, *ones)
    return (x * torch.sigmoid(t.reshape(b * groups, 1, *spatial))).reshape(b, c, *spatial)


def test_parameter_count_is_two_per_group():
    layer = SpatialGroupEnhance(groups=64)
    layer.build((None, 8, 8, 256))
    assert layer.count_params() == 128


def test_gate_is_sigmoid_one_at_initialisation():
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 16)).astype("float32")
    outputs, gate = SpatialGroupEnhance(groups=4)(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(gate), np.full((2, 5, 6, 4), 1 / (1 + np.exp(-1))), 1e-6)
    np.testing.assert_allclose(to_numpy(outputs), x / (1 + np.exp(-1)), rtol=1e-6, atol=1e-6)


def test_matches_authors_code():
    x = np.random.default_rng(1).normal(size=(2, 6, 7, 16)).astype("float32")
    layer = SpatialGroupEnhance(groups=4)
    layer(x)
    randomize_weights(layer)
    with torch.no_grad():
        expected = sge_reference(nchw(x), 4, tensor(layer.weight), tensor(layer.bias))
    np.testing.assert_allclose(to_numpy(layer(x)), nhwc_numpy(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_matches_authors_code_over_every_position(data_format):
    x = np.random.default_rng(4).normal(size=(2, 3, 4, 5, 16)).astype("float32")
    layer = SpatialGroupEnhance(groups=4, data_format=data_format)
    fed = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(fed)
    randomize_weights(layer)
    outputs, gate = layer(fed, return_attention=True)
    outputs, gate = to_numpy(outputs), to_numpy(gate)
    if data_format == "channels_first":
        outputs, gate = np.moveaxis(outputs, 1, -1), np.moveaxis(gate, 1, -1)
    with torch.no_grad():
        clip = torch.tensor(np.moveaxis(x, -1, 1))  # (b, c, d, h, w)
        expected = sge_reference(clip, 4, tensor(layer.weight), tensor(layer.bias))
    expected = np.moveaxis(expected.numpy(), 1, -1)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    # Not the image form frame by frame: the statistics span the depth too.
    with torch.no_grad():
        frames = [
            nhwc_numpy(sge_reference(nchw(x[:, d]), 4, tensor(layer.weight), tensor(layer.bias)))
            for d in range(3)
        ]
    assert np.abs(np.stack(frames, axis=1) - expected).max() > 1e-2
    assert gate.shape == (2, 3, 4, 5, 4)


def test_each_group_is_gated_by_its_own_channels():
    x = np.random.default_rng(2).normal(size=(1, 4, 5, 16)).astype("float32")
    layer = SpatialGroupEnhance(groups=4)
    layer(x)
    randomize_weights(layer)
    _, before = layer(x, return_attention=True)
    moved = x.copy()
    moved[..., 5] *= 3.0  # a channel of group 1 (channels 4-7)
    _, after = layer(moved, return_attention=True)
    changed = np.abs(to_numpy(after) - to_numpy(before)).max(axis=(0, 1, 2)) > 1e-6
    assert changed.tolist() == [False, True, False, False]


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match="`groups`"):
        SpatialGroupEnhance(groups=5)(np.zeros((1, 4, 4, 16), "float32"))
    with pytest.raises(ValueError, match="`groups`"):
        SpatialGroupEnhance(groups=0)
