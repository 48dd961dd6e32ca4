"""GlobalAttention: GAM's forward pass with the same weights, parameters, no pooling."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import GlobalAttention

torch = pytest.importorskip("torch")
from torch_reference import batch_norm
from torch_reference import conv2d_kernel
from torch_reference import dense_kernel
from torch_reference import nchw
from torch_reference import nhwc_numpy
from torch_reference import tensor


def gam_reference(x, layer):
    """GAM as the paper describes it (and GAM_Attention implements it), in eval mode."""
    functional = torch.nn.functional
    permuted = x.permute(0, 2, 3, 1)  # the 3-D permutation: an MLP per pixel
    hidden = functional.relu(
        functional.linear(
            permuted, dense_kernel(layer.channel_hidden.kernel), tensor(layer.channel_hidden.bias)
        )
    )
    logits = functional.linear(
        hidden, dense_kernel(layer.channel_logits.kernel), tensor(layer.channel_logits.bias)
    )
    x = x * logits.permute(0, 3, 1, 2).sigmoid()
    reduce, expand = layer.spatial_reduce, layer.spatial_expand
    s = functional.conv2d(x, conv2d_kernel(reduce.kernel), tensor(reduce.bias), padding=3)
    s = functional.relu(batch_norm(s, layer.reduce_norm))
    s = functional.conv2d(s, conv2d_kernel(expand.kernel), tensor(expand.bias), padding=3)
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
