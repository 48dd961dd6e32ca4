import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import EfficientChannelAttention
from keras_attention.ops import eca_kernel_size


@pytest.mark.parametrize(
    "channels, k", [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)]
)
def test_adaptive_kernel_size_matches_paper(channels, k):
    # Wang et al. 2020, eq. 12 with gamma=2, b=1 (values checked by hand).
    assert eca_kernel_size(channels) == k
    layer = EfficientChannelAttention()
    layer.build((None, 7, 7, channels))
    assert tuple(layer.conv.kernel.shape) == (k, 1, 1)
    assert layer.count_params() == k  # no bias


def test_explicit_kernel_size_overrides_the_rule():
    layer = EfficientChannelAttention(kernel_size=9)
    layer.build((None, 7, 7, 64))
    assert layer.count_params() == 9


def test_matches_numpy_reference():
    layer = EfficientChannelAttention(kernel_size=3)
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 10)).astype("float32")
    layer(x)
    randomize_weights(layer)
    kernel = layer.get_weights()[0][:, 0, 0]
    squeezed = np.pad(x.mean(axis=(1, 2)), ((0, 0), (1, 1)))  # "same" zero padding
    logits = np.stack([squeezed[:, c : c + 3] @ kernel for c in range(10)], axis=1)
    gate = 1 / (1 + np.exp(-logits))
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(attention), gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), x * gate[:, None, None, :], rtol=1e-5, atol=1e-6)


def test_gate_mixes_only_neighbouring_channels():
    layer = EfficientChannelAttention(kernel_size=3)
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 12)).astype("float32")
    _, before = layer(x, return_attention=True)
    x2 = x.copy()
    x2[..., 6] += 5.0
    _, after = layer(x2, return_attention=True)
    changed = np.flatnonzero(np.abs(to_numpy(after) - to_numpy(before))[0] > 1e-7)
    assert set(changed) <= {5, 6, 7} and 6 in changed


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": 3.0}, "kernel_size"),
        ({"gamma": 0}, "gamma"),
        ({"b": "1"}, "b"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        EfficientChannelAttention(**kwargs)
