"""LargeKernelAttention: VAN's LKA against its PyTorch forward pass, parameter count."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import LargeKernelAttention

torch = pytest.importorskip("torch")
from torch_reference import conv2d_kernel
from torch_reference import depthwise2d_kernel
from torch_reference import nchw
from torch_reference import nhwc_numpy
from torch_reference import tensor


def van_lka(x, layer):
    """VAN's LKA (Visual-Attention-Network/VAN-Classification): u * conv1(conv_spatial(conv0(u)))."""
    functional = torch.nn.functional
    channels = x.shape[1]
    attn = functional.conv2d(
        x,
        depthwise2d_kernel(layer.local.kernel),
        tensor(layer.local.bias),
        padding=2,
        groups=channels,
    )
    attn = functional.conv2d(
        attn,
        depthwise2d_kernel(layer.dilated.kernel),
        tensor(layer.dilated.bias),
        padding=9,
        dilation=3,
        groups=channels,
    )
    attn = functional.conv2d(
        attn, conv2d_kernel(layer.pointwise.kernel), tensor(layer.pointwise.bias)
    )
    return x * attn, attn


def test_parameter_count_for_256_channels():
    layer = LargeKernelAttention()
    layer.build((None, 8, 8, 256))
    # 5x5 depthwise + bias, 7x7 depthwise + bias, 1x1 conv + bias.
    assert layer.count_params() == (25 * 256 + 256) + (49 * 256 + 256) + (256 * 256 + 256) == 85248


def test_matches_van_code():
    x = np.random.default_rng(0).normal(size=(2, 11, 13, 8)).astype("float32")
    layer = LargeKernelAttention()
    layer(x)
    randomize_weights(layer)
    outputs, attention = layer(x, return_attention=True)
    with torch.no_grad():
        expected, expected_attention = van_lka(nchw(x), layer)
    np.testing.assert_allclose(to_numpy(outputs), nhwc_numpy(expected), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(attention), nhwc_numpy(expected_attention), rtol=1e-5, atol=1e-5
    )


def test_receptive_field_reaches_11_pixels_each_side():
    # 5x5 (radius 2) then 7x7 dilated by 3 (radius 9): the attention at a pixel
    # sees 11 pixels each way (VAN's "21x21" decomposition with K=21, d=3).
    layer = LargeKernelAttention()
    x = np.zeros((1, 25, 25, 2), "float32")
    layer(x)
    randomize_weights(layer)
    _, base = layer(x, return_attention=True)
    for offset, reaches in ((11, True), (12, False)):
        moved = x.copy()
        moved[0, offset, 12, :] = 1.0
        _, attention = layer(moved, return_attention=True)
        changed = not np.allclose(to_numpy(attention)[0, 0, 12], to_numpy(base)[0, 0, 12])
        assert changed is reaches, offset
