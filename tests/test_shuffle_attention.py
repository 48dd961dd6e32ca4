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
    """wofmanaf/SA-Net's sa_layer, restated with our weights."""
    functional = torch.nn.functional
    b, _, h, w = x.shape

    def param(weight):
        return tensor(weight).reshape(1, -1, 1, 1)

    x = x.reshape(b * groups, -1, h, w)
    x_0, x_1 = x.chunk(2, dim=1)
    channel = x_0 * torch.sigmoid(
        param(layer.cweight) * x_0.mean(dim=(2, 3), keepdim=True) + param(layer.cbias)
    )
    half = x_1.shape[1]
    normed = functional.group_norm(
        x_1, half, tensor(layer.norm_gamma), tensor(layer.norm_beta), eps=1e-5
    )
    spatial = x_1 * torch.sigmoid(param(layer.sweight) * normed + param(layer.sbias))
    out = torch.cat([channel, spatial], dim=1).reshape(b, -1, h, w)
    # channel_shuffle(out, 2)
    return out.reshape(b, 2, -1, h, w).permute(0, 2, 1, 3, 4).reshape(b, -1, h, w)


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
