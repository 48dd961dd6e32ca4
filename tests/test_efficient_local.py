"""EfficientLocalAttention: the paper's ELA forward pass, parameters, the two strips."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import EfficientLocalAttention

torch = pytest.importorskip("torch")
from torch_reference import depthwise1d_kernel
from torch_reference import nchw
from torch_reference import nhwc_numpy
from torch_reference import tensor


def ela_reference(x, layer):
    """ELA as the paper's listing (Xu and Wan 2024): shared depthwise Conv1d and GroupNorm."""
    functional = torch.nn.functional
    b, c, h, w = x.shape
    kernel = depthwise1d_kernel(layer.conv.kernel)

    def gate(strip):
        strip = functional.conv1d(strip, kernel, padding=layer.kernel_size // 2, groups=c)
        strip = functional.group_norm(
            strip, layer.norm_groups, tensor(layer.norm_gamma), tensor(layer.norm_beta), eps=1e-5
        )
        return torch.sigmoid(strip)

    x_h = gate(x.mean(dim=3)).reshape(b, c, h, 1)
    x_w = gate(x.mean(dim=2)).reshape(b, c, 1, w)
    return x * x_h * x_w


def ela_volume_reference(x, layer):
    """The paper's listing with a third strip: `x` (b, c, d, h, w), strips along d, h and w."""
    functional = torch.nn.functional
    b, c, d, h, w = x.shape
    kernel = depthwise1d_kernel(layer.conv.kernel)

    def gate(strip):
        strip = functional.conv1d(strip, kernel, padding=layer.kernel_size // 2, groups=c)
        strip = functional.group_norm(
            strip, layer.norm_groups, tensor(layer.norm_gamma), tensor(layer.norm_beta), eps=1e-5
        )
        return torch.sigmoid(strip)

    x_d = gate(x.mean(dim=(3, 4))).reshape(b, c, d, 1, 1)
    x_h = gate(x.mean(dim=(2, 4))).reshape(b, c, 1, h, 1)
    x_w = gate(x.mean(dim=(2, 3))).reshape(b, c, 1, 1, w)
    return x * x_d * x_h * x_w, {"depth": x_d, "height": x_h, "width": x_w}


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_matches_paper_code_with_three_strips(data_format):
    x = np.random.default_rng(5).normal(size=(2, 6, 5, 7, 16)).astype("float32")
    layer = EfficientLocalAttention(kernel_size=5, norm_groups=4, data_format=data_format)
    fed = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(fed)
    randomize_weights(layer)
    outputs, attention = layer(fed, return_attention=True)
    with torch.no_grad():
        expected, gates = ela_volume_reference(torch.tensor(np.moveaxis(x, -1, 1)), layer)
    outputs = to_numpy(outputs)
    if data_format == "channels_last":
        outputs = np.moveaxis(outputs, -1, 1)
    np.testing.assert_allclose(outputs, expected.numpy(), rtol=1e-5, atol=1e-5)
    for name, gate in gates.items():
        actual = to_numpy(attention[name])
        if data_format == "channels_last":
            actual = np.moveaxis(actual, -1, 1)
        np.testing.assert_allclose(actual, gate.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel_size, expected", [(7, 2304), (5, 1792)])
def test_parameter_count_for_256_channels(kernel_size, expected):
    layer = EfficientLocalAttention(kernel_size=kernel_size)
    layer.build((None, 8, 8, 256))
    # Depthwise 1-D conv without bias, GroupNorm scale and shift.
    assert layer.count_params() == 256 * kernel_size + 2 * 256 == expected


@pytest.mark.parametrize("kernel_size, norm_groups", [(7, 4), (5, 16), (3, 1)])
def test_matches_paper_code(kernel_size, norm_groups):
    x = np.random.default_rng(0).normal(size=(2, 9, 6, 16)).astype("float32")
    layer = EfficientLocalAttention(kernel_size=kernel_size, norm_groups=norm_groups)
    layer(x)
    randomize_weights(layer)
    with torch.no_grad():
        expected = ela_reference(nchw(x), layer)
    np.testing.assert_allclose(to_numpy(layer(x)), nhwc_numpy(expected), rtol=1e-5, atol=1e-5)


def test_gate_is_a_row_gate_times_a_column_gate():
    x = np.random.default_rng(1).normal(size=(2, 5, 7, 8)).astype("float32")
    layer = EfficientLocalAttention(kernel_size=3, norm_groups=2)
    layer(x)
    randomize_weights(layer)
    outputs, attention = layer(x, return_attention=True)
    height, width = to_numpy(attention["height"]), to_numpy(attention["width"])
    assert height.shape == (2, 5, 1, 8) and width.shape == (2, 1, 7, 8)
    np.testing.assert_allclose(to_numpy(outputs), x * height * width, rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="`kernel_size`"):
        EfficientLocalAttention(kernel_size=6)
    with pytest.raises(ValueError, match="`norm_groups`"):
        EfficientLocalAttention(norm_groups=0)
    with pytest.raises(ValueError, match="`norm_groups`"):
        EfficientLocalAttention(norm_groups=16)(np.zeros((1, 4, 4, 24), "float32"))
