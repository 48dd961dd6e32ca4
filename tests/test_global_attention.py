"""GlobalAttention: GAM's forward pass with the same weights, parameters, no pooling."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import GlobalAttention

torch = pytest.importorskip("torch")
from torch_reference import batch_norm
from torch_reference import dense_kernel
from torch_reference import nchw
from torch_reference import nhwc_numpy
from torch_reference import tensor


def conv_kernel(kernel):
    """Keras Conv2D/Conv3D (k..., in, out) -> torch (out, in, k...)."""
    rank = len(kernel.shape) - 2
    return tensor(kernel).permute(rank + 1, rank, *range(rank))


def gam_reference(x, layer):
    """GAM as the paper describes it (and GAM_Attention implements it), in eval mode.

    `x` is (b, c, h, w), or (b, c, d, h, w) with 7x7x7 convolutions.
    """
    functional = torch.nn.functional
    rank = x.dim() - 2
    conv = functional.conv2d if rank == 2 else functional.conv3d
    permuted = torch.movedim(x, 1, -1)  # the 3-D permutation: an MLP per pixel
    hidden = functional.relu(
        functional.linear(
            permuted, dense_kernel(layer.channel_hidden.kernel), tensor(layer.channel_hidden.bias)
        )
    )
    logits = functional.linear(
        hidden, dense_kernel(layer.channel_logits.kernel), tensor(layer.channel_logits.bias)
    )
    x = x * torch.movedim(logits, -1, 1).sigmoid()
    reduce, expand = layer.spatial_reduce, layer.spatial_expand
    s = conv(x, conv_kernel(reduce.kernel), tensor(reduce.bias), padding=3)
    s = functional.relu(batch_norm(s, layer.reduce_norm))
    s = conv(s, conv_kernel(expand.kernel), tensor(expand.bias), padding=3)
    return x * batch_norm(s, layer.expand_norm).sigmoid()


def test_parameter_count_for_256_channels():
    layer = GlobalAttention(reduction=4)
    layer.build((None, 8, 8, 256))
    mlp = (256 * 64 + 64) + (64 * 256 + 256)
    convs = (49 * 256 * 64 + 64) + (49 * 64 * 256 + 256)
    norms = 4 * 64 + 4 * 256  # gamma, beta, moving mean and variance
    assert layer.count_params() == mlp + convs + norms == 1640320


def test_matches_reference_in_inference_mode():
    x = np.random.default_rng(0).normal(size=(2, 6, 9, 16)).astype("float32")
    layer = GlobalAttention(reduction=4)
    layer(x)
    randomize_weights(layer)
    with torch.no_grad():
        expected = gam_reference(nchw(x), layer)
    np.testing.assert_allclose(to_numpy(layer(x)), nhwc_numpy(expected), rtol=1e-5, atol=1e-5)


def test_volume_parameter_count_for_256_channels():
    layer = GlobalAttention(reduction=4)
    layer.build((None, 4, 8, 8, 256))
    mlp = (256 * 64 + 64) + (64 * 256 + 256)
    convs = (343 * 256 * 64 + 64) + (343 * 64 * 256 + 256)
    norms = 4 * 64 + 4 * 256
    assert layer.count_params() == mlp + convs + norms == 11274112


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_matches_reference_with_7x7x7_convolutions(data_format):
    x = np.random.default_rng(2).normal(size=(2, 5, 6, 4, 8)).astype("float32")
    layer = GlobalAttention(reduction=2, data_format=data_format)
    fed = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(fed)
    randomize_weights(layer)
    assert tuple(layer.spatial_reduce.kernel.shape) == (7, 7, 7, 8, 4)
    outputs, attention = layer(fed, return_attention=True)
    outputs = to_numpy(outputs)
    if data_format == "channels_first":
        outputs = np.moveaxis(outputs, 1, -1)
    with torch.no_grad():
        expected = gam_reference(torch.tensor(np.moveaxis(x, -1, 1)), layer)
    np.testing.assert_allclose(outputs, np.moveaxis(expected.numpy(), 1, -1), rtol=1e-5, atol=1e-5)
    assert all(tuple(a.shape) == fed.shape for a in attention.values())


def test_channel_gate_differs_per_pixel():
    # No pooling: unlike SE/CBAM, the channel gate has a value per pixel.
    x = np.random.default_rng(1).normal(size=(1, 4, 5, 8)).astype("float32")
    _, attention = GlobalAttention(reduction=2)(x, return_attention=True)
    channel = to_numpy(attention["channel"])
    assert channel.shape == x.shape
    assert np.abs(channel - channel[:, :1, :1]).max() > 1e-3


def test_bad_reduction_raises():
    with pytest.raises(ValueError, match="`reduction`"):
        GlobalAttention(reduction=0)
