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


def depthwise3d_reference(x, kernel, bias, dilation):
    """(b, d, h, w, c) with a (kd, kh, kw, c, 1) kernel: "same" zero padding, stride 1."""
    taps = kernel.shape[:3]
    reach = [(k - 1) * dilation for k in taps]
    padded = np.pad(x, [(0, 0)] + [(r // 2, r - r // 2) for r in reach] + [(0, 0)])
    _, d, h, w, _ = x.shape
    out = np.zeros(x.shape, np.float64)
    for i in range(taps[0]):
        for j in range(taps[1]):
            for k in range(taps[2]):
                window = padded[
                    :,
                    i * dilation : i * dilation + d,
                    j * dilation : j * dilation + h,
                    k * dilation : k * dilation + w,
                ]
                out += window * kernel[i, j, k, :, 0]
    return out + bias


def lka3d_reference(x, layer):
    """The 3-D LKA from the layer's weights in NumPy: 5x5x5 dw, 7x7x7 dw dilated 3, 1x1x1."""
    weights = [to_numpy(w).astype(np.float64) for w in layer.weights]
    local_kernel, local_bias, dilated_kernel, dilated_bias, point_kernel, point_bias = weights
    attention = depthwise3d_reference(x.astype(np.float64), local_kernel, local_bias, 1)
    attention = depthwise3d_reference(attention, dilated_kernel, dilated_bias, 3)
    attention = attention @ point_kernel[0, 0, 0] + point_bias
    return x * attention, attention


def test_volume_parameter_count_for_256_channels():
    layer = LargeKernelAttention()
    layer.build((None, 4, 8, 8, 256))
    assert [tuple(w.shape) for w in layer.weights] == [
        (5, 5, 5, 256, 1),
        (256,),
        (7, 7, 7, 256, 1),
        (256,),
        (1, 1, 1, 256, 256),
        (256,),
    ]
    assert layer.count_params() == (125 * 256 + 256) + (343 * 256 + 256) + (256 * 256 + 256)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_matches_numpy_reference(data_format):
    # Depth 11 > the dilated kernel's reach each way (9): every depth tap is exercised.
    x = np.random.default_rng(3).normal(size=(2, 11, 12, 10, 4)).astype("float32")
    layer = LargeKernelAttention(data_format=data_format)
    fed = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(fed)
    randomize_weights(layer)
    outputs, attention = (to_numpy(t) for t in layer(fed, return_attention=True))
    if data_format == "channels_first":
        outputs, attention = np.moveaxis(outputs, 1, -1), np.moveaxis(attention, 1, -1)
    expected, expected_attention = lka3d_reference(x, layer)
    np.testing.assert_allclose(attention, expected_attention, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)


def test_volume_receptive_field_reaches_11_voxels_in_depth():
    layer = LargeKernelAttention()
    x = np.zeros((1, 25, 3, 3, 2), "float32")
    layer(x)
    randomize_weights(layer)
    _, base = layer(x, return_attention=True)
    for offset, reaches in ((11, True), (12, False)):
        moved = x.copy()
        moved[0, offset, 1, 1, :] = 1.0
        _, attention = layer(moved, return_attention=True)
        changed = not np.allclose(to_numpy(attention)[0, 0], to_numpy(base)[0, 0])
        assert changed is reaches, offset


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
