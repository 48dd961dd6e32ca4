"""FrequencyChannelAttention: the authors' FcaNet layer as a PyTorch reference with our weights."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import FrequencyChannelAttention

# The top-16 (u, v) pairs of the 7x7 DCT space, best first (the authors' selection table).
TOP16 = [(0, 0), (0, 1), (6, 0), (0, 5), (0, 2), (1, 0), (1, 2), (4, 0),
         (5, 0), (1, 6), (3, 0), (0, 4), (0, 6), (0, 3), (3, 5), (2, 2)]  # fmt: skip


def random_input(shape=(2, 9, 11, 32), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def basis(position, frequency, size):
    value = math.cos(math.pi * frequency * (position + 0.5) / size) / math.sqrt(size)
    return value if frequency == 0 else value * math.sqrt(2)


def fca_reference(x, kernels, dct_h, dct_w, frequencies):
    """The authors' MultiSpectralAttentionLayer on NCHW `x`, with our two Dense kernels."""
    _, c, h, w = x.shape
    filters = torch.zeros(c, dct_h, dct_w)
    part = c // len(frequencies)
    for i, (u, v) in enumerate(frequencies):
        u, v = u * (dct_h // 7), v * (dct_w // 7)
        for tx in range(dct_h):
            for ty in range(dct_w):
                value = basis(tx, u, dct_h) * basis(ty, v, dct_w)
                filters[i * part : (i + 1) * part, tx, ty] = value
    x = torch.tensor(x)
    pooled = x if (h, w) == (dct_h, dct_w) else F.adaptive_avg_pool2d(x, (dct_h, dct_w))
    squeezed = (pooled * filters).sum(dim=(2, 3))
    hidden = F.relu(squeezed @ torch.tensor(kernels[0]))
    gate = torch.sigmoid(hidden @ torch.tensor(kernels[1]))
    return (x * gate[:, :, None, None]).numpy()


@pytest.mark.parametrize(
    "size, dct",
    [
        ((7, 7), (7, 7)),
        ((14, 14), (14, 14)),
        ((9, 11), (7, 7)),
        ((6, 10), (7, 7)),
        ((20, 17), (14, 7)),
    ],
)
@pytest.mark.parametrize("num_frequencies", [16, 4])
def test_matches_the_authors_forward_pass(size, dct, num_frequencies):
    layer = FrequencyChannelAttention(
        reduction=4, dct_height=dct[0], dct_width=dct[1], num_frequencies=num_frequencies
    )
    x = random_input((2, *size, 32))
    layer(x)
    randomize_weights(layer)
    expected = fca_reference(
        x.transpose(0, 3, 1, 2), layer.get_weights(), *dct, TOP16[:num_frequencies]
    )
    np.testing.assert_allclose(
        to_numpy(layer(x)), expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5
    )


def test_lowest_frequency_alone_is_scaled_average_pooling():
    # DCT (0, 0) on an h x w grid is the sum / sqrt(h w): SE's squeeze times sqrt(h w).
    layer = FrequencyChannelAttention(reduction=4, num_frequencies=1)
    x = random_input((2, 7, 7, 32))
    layer(x)
    randomize_weights(layer)
    reduce, expand = layer.get_weights()
    squeezed = x.mean(axis=(1, 2)) * 7.0
    gate = 1 / (1 + np.exp(-(np.maximum(squeezed @ reduce, 0) @ expand)))
    _, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(attention), gate, rtol=1e-5, atol=1e-6)


def test_dct_filters_are_constants_and_orthonormal():
    layer = FrequencyChannelAttention(dct_height=14, dct_width=14)
    layer.build((None, 14, 14, 256))
    assert layer.count_params() == 2 * 256 * 16  # the MLP only: no biases, no DCT weights
    # One filter per frequency (16 channels each), orthonormal as 196-vectors.
    filters = layer.filters.reshape(196, 16, 16)[:, :, 0]
    np.testing.assert_allclose(filters.T @ filters, np.eye(16), atol=1e-5)


def test_channels_must_divide_into_frequencies():
    with pytest.raises(ValueError, match="`num_frequencies`"):
        FrequencyChannelAttention()(np.zeros((1, 7, 7, 24), "float32"))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"reduction": 0}, "reduction"),
        ({"dct_height": 4}, "dct_height"),
        ({"dct_width": 0}, "dct_width"),
        ({"num_frequencies": 3}, "num_frequencies"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        FrequencyChannelAttention(**kwargs)
