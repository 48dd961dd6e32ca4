"""TripletAttention: the authors' three rotated branches, as a PyTorch reference with our weights."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import TripletAttention

BRANCHES = ("channel_width", "height_channel", "height_width")


def random_input(shape=(2, 5, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def torch_gate(x, kernel, gamma, beta, mean, variance, epsilon=1e-5):
    """The authors' gate on an NCHW tensor: Z-pool [max, mean], conv, eval BN, sigmoid."""
    pooled = torch.cat([x.max(dim=1, keepdim=True)[0], x.mean(dim=1, keepdim=True)], dim=1)
    weight = torch.tensor(kernel.transpose(3, 2, 0, 1))
    logits = F.conv2d(pooled, weight, padding=kernel.shape[0] // 2)
    logits = (logits - float(mean[0])) / np.sqrt(float(variance[0]) + epsilon)
    return x * torch.sigmoid(logits * float(gamma[0]) + float(beta[0]))


def triplet_reference(layer, x):
    """The authors' forward pass (permutations included) on NCHW `x`."""
    weights = {
        branch: [
            to_numpy(w)
            for w in getattr(layer, f"{branch}_conv").weights
            + getattr(layer, f"{branch}_norm").weights
        ]
        for branch in layer._branches()
    }
    x = torch.tensor(x)
    outs = [
        torch_gate(x.permute(0, 2, 1, 3), *weights["channel_width"]).permute(0, 2, 1, 3),
        torch_gate(x.permute(0, 3, 2, 1), *weights["height_channel"]).permute(0, 3, 2, 1),
    ]
    if layer.spatial:
        outs.append(torch_gate(x, *weights["height_width"]))
    return (sum(outs) / len(outs)).numpy()


@pytest.mark.parametrize("spatial", [True, False])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_the_authors_forward_pass(spatial, data_format):
    layer = TripletAttention(kernel_size=7, spatial=spatial, data_format=data_format)
    x = random_input()  # NHWC, H != W != C so that every permutation matters
    x_in = x if data_format == "channels_last" else x.transpose(0, 3, 1, 2)
    layer(x_in)
    randomize_weights(layer)
    expected = triplet_reference(layer, x.transpose(0, 3, 1, 2))
    actual = to_numpy(layer(x_in))
    if data_format == "channels_last":
        actual = actual.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_parameter_count_is_independent_of_channels():
    for channels in (16, 256):
        layer = TripletAttention()
        layer.build((None, 14, 14, channels))
        assert layer.count_params() == 3 * (7 * 7 * 2 + 4)
    layer = TripletAttention(spatial=False)
    layer.build((None, 14, 14, 256))
    assert layer.count_params() == 2 * (7 * 7 * 2 + 4)


def test_gate_shapes_broadcast_along_the_pooled_axis():
    _, attention = TripletAttention(kernel_size=3)(random_input(), return_attention=True)
    shapes = {name: tuple(gate.shape) for name, gate in attention.items()}
    assert shapes == {
        "channel_width": (2, 1, 7, 16),
        "height_channel": (2, 5, 1, 16),
        "height_width": (2, 5, 7, 1),
    }


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"spatial": 1}, "spatial"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        TripletAttention(**kwargs)
