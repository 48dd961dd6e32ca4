"""ShuffleAttention: SA-Net's forward pass, parameters, sigmoid(1) at init, the shuffle."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import ShuffleAttention

torch = pytest.importorskip("torch")
from torch_reference import nchw
from torch_reference import nhwc_numpy
from torch_reference import tensor


def sa_reference(x, groups, layer):
    """wofmanaf/SA-Net's sa_layer, restated with our weights.

    `x` is (b, c, h, w), or (b, c, d, h, w) with every spatial axis pooled.
    """
    functional = torch.nn.functional
    b, _, *spatial_shape = x.shape
    ones = (1,) * len(spatial_shape)
    axes = tuple(range(2, 2 + len(spatial_shape)))

    def param(weight):
        return tensor(weight).reshape(1, -1, *ones)

    x = x.reshape(b * groups, -1, *spatial_shape)
    x_0, x_1 = x.chunk(2, dim=1)
    channel = x_0 * torch.sigmoid(
        param(layer.cweight) * x_0.mean(dim=axes, keepdim=True) + param(layer.cbias)
    )
    half = x_1.shape[1]
    normed = functional.group_norm(
        x_1, half, tensor(layer.norm_gamma), tensor(layer.norm_beta), eps=1e-5
    )
    spatial = x_1 * torch.sigmoid(param(layer.sweight) * normed + param(layer.sbias))
    out = torch.cat([channel, spatial], dim=1).reshape(b, -1, *spatial_shape)
    # channel_shuffle(out, 2)
    out = out.reshape(b, 2, -1, *spatial_shape)
    return out.transpose(1, 2).reshape(b, -1, *spatial_shape)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_matches_authors_code_over_every_position(data_format):
    x = np.random.default_rng(6).normal(size=(2, 3, 5, 4, 16)).astype("float32")
    layer = ShuffleAttention(groups=2, data_format=data_format)
    fed = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(fed)
    randomize_weights(layer)
    outputs, gate = layer(fed, return_attention=True)
    outputs = to_numpy(outputs)
    if data_format == "channels_last":
        outputs = np.moveaxis(outputs, -1, 1)
    with torch.no_grad():
        expected = sa_reference(torch.tensor(np.moveaxis(x, -1, 1)), 2, layer)
    np.testing.assert_allclose(outputs, expected.numpy(), rtol=1e-5, atol=1e-5)
    assert tuple(gate.shape) == fed.shape


def test_parameter_count_for_256_channels():
    layer = ShuffleAttention(groups=64)
    layer.build((None, 8, 8, 256))
    # n = 256 / (2 * 64) = 2 channels a half; cweight, cbias, sweight, sbias, GN scale, shift.
    assert layer.count_params() == 6 * 2 == 12


@pytest.mark.parametrize("groups, channels", [(2, 16), (4, 16), (1, 8)])
def test_matches_authors_code(groups, channels):
    x = np.random.default_rng(0).normal(size=(2, 5, 6, channels)).astype("float32")
    layer = ShuffleAttention(groups=groups)
    layer(x)
    randomize_weights(layer)
    with torch.no_grad():
        expected = sa_reference(nchw(x), groups, layer)
    np.testing.assert_allclose(to_numpy(layer(x)), nhwc_numpy(expected), rtol=1e-5, atol=1e-5)


def test_initial_gates_are_sigmoid_one_then_channels_shuffle():
    x = np.random.default_rng(1).normal(size=(1, 3, 4, 8)).astype("float32")
    outputs, gate = ShuffleAttention(groups=2)(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(gate), np.full(x.shape, 1 / (1 + np.exp(-1))), 1e-6)
    # Shuffle of two halves: output channel 2k + s is input channel 4s + k.
    order = [0, 4, 1, 5, 2, 6, 3, 7]
    np.testing.assert_allclose(to_numpy(outputs), x[..., order] / (1 + np.exp(-1)), 1e-6, 1e-6)


def test_groups_must_divide_half_the_channels():
    with pytest.raises(ValueError, match="`groups`"):
        ShuffleAttention(groups=4)(np.zeros((1, 4, 4, 12), "float32"))
    with pytest.raises(ValueError, match="`groups`"):
        ShuffleAttention(groups=0)
