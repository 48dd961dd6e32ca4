"""BottleneckAttention: the authors' BAM as a PyTorch reference with our weights, both combines."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import BottleneckAttention


def random_input(shape=(2, 9, 11, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def bn_eval(x, gamma, beta, mean, variance, epsilon=1e-5):
    mean, variance, gamma, beta = (torch.tensor(v) for v in (mean, variance, gamma, beta))
    return F.batch_norm(x, mean, variance, gamma, beta, training=False, eps=epsilon)


def bam_reference(layer, x):
    """The authors' BAM forward pass (eval mode) on NCHW `x`, with `layer`'s weights.

    An NCDHW `x` runs the same with `conv3d` and every spatial axis pooled.
    """
    rank = x.ndim - 2
    conv_nd = F.conv2d if rank == 2 else F.conv3d

    def w(sublayer):
        return [to_numpy(v) for v in sublayer.weights]

    def conv(t, sublayer, dilation=1):
        kernel, bias = w(sublayer)
        weight = torch.tensor(kernel.transpose(rank + 1, rank, *range(rank)))
        pad = dilation * (kernel.shape[0] // 2)
        return conv_nd(t, weight, torch.tensor(bias), padding=pad, dilation=dilation)

    x = torch.tensor(x)
    kernel, bias = w(layer.channel_hidden)
    positions = tuple(range(2, 2 + rank))
    hidden = F.linear(x.mean(dim=positions), torch.tensor(kernel.T), torch.tensor(bias))
    hidden = F.relu(bn_eval(hidden, *w(layer.channel_norm)))
    kernel, bias = w(layer.channel_logits)
    channel = F.linear(hidden, torch.tensor(kernel.T), torch.tensor(bias))
    channel = channel.reshape(*channel.shape, *(1,) * rank)
    s = F.relu(bn_eval(conv(x, layer.spatial_reduce), *w(layer.spatial_reduce_norm)))
    d = layer.dilation_rate
    s = F.relu(bn_eval(conv(s, layer.spatial_conv1, d), *w(layer.spatial_norm1)))
    s = F.relu(bn_eval(conv(s, layer.spatial_conv2, d), *w(layer.spatial_norm2)))
    spatial = conv(s, layer.spatial_logits)
    logits = channel + spatial if layer.combine == "sum" else channel * spatial
    return ((1 + torch.sigmoid(logits)) * x).numpy()


@pytest.mark.parametrize("combine", ["sum", "product"])
def test_matches_the_authors_forward_pass(combine):
    layer = BottleneckAttention(reduction=4, combine=combine)
    x = random_input()
    layer(x)
    randomize_weights(layer)
    expected = bam_reference(layer, x.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(
        to_numpy(layer(x)), expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("combine", ["sum", "product"])
def test_volume_matches_the_authors_forward_pass_in_3d(combine, data_format):
    # Depth 9 > the dilated 3x3x3 convolutions' reach (4 each way): depth taps all used.
    layer = BottleneckAttention(reduction=4, combine=combine, data_format=data_format)
    x = random_input((2, 9, 6, 5, 16), seed=3)
    fed = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(fed)
    randomize_weights(layer)
    assert tuple(layer.spatial_conv1.kernel.shape) == (3, 3, 3, 4, 4)
    outputs, attention = (to_numpy(t) for t in layer(fed, return_attention=True))
    if data_format == "channels_first":
        outputs = np.moveaxis(outputs, 1, -1)
    expected = bam_reference(layer, np.moveaxis(x, -1, 1))
    np.testing.assert_allclose(outputs, np.moveaxis(expected, 1, -1), rtol=1e-5, atol=1e-5)
    assert attention.shape == fed.shape


def test_volume_parameter_count_for_256_channels():
    layer = BottleneckAttention()
    layer.build((None, 4, 14, 14, 256))
    channel = (256 * 16 + 16) + 4 * 16 + (16 * 256 + 256)
    spatial = (256 * 16 + 16) + 4 * 16 + 2 * (27 * 16 * 16 + 16 + 4 * 16) + (16 + 1)
    assert layer.count_params() == channel + spatial == 26705


def test_parameter_count_for_256_channels():
    layer = BottleneckAttention()
    layer.build((None, 14, 14, 256))
    channel = (256 * 16 + 16) + 4 * 16 + (16 * 256 + 256)
    spatial = (256 * 16 + 16) + 4 * 16 + 2 * (9 * 16 * 16 + 16 + 4 * 16) + (16 + 1)
    assert layer.count_params() == channel + spatial == 17489


def test_output_is_between_x_and_2x():
    layer = BottleneckAttention(reduction=4)
    x = np.abs(random_input())
    layer(x)
    randomize_weights(layer)
    outputs, attention = layer(x, return_attention=True)
    ratio = to_numpy(outputs) / x
    assert tuple(attention.shape) == x.shape
    np.testing.assert_allclose(ratio, 1 + to_numpy(attention), rtol=1e-5)
    assert ratio.min() > 1.0 and ratio.max() < 2.0


def test_trains_on_a_batch_of_one():
    # PyTorch's BatchNorm1d of the authors' channel branch refuses a batch of 1.
    layer = BottleneckAttention(reduction=4)
    x = random_input((1, 9, 11, 16))
    outputs = to_numpy(layer(x, training=True))
    assert outputs.shape == x.shape and np.isfinite(outputs).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"reduction": 0}, "reduction"),
        ({"dilation_rate": 0}, "dilation_rate"),
        ({"combine": "max"}, "combine"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        BottleneckAttention(**kwargs)
