"""EfficientMultiScaleAttention: the authors' EMA forward pass, parameters, softmax axis."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import EfficientMultiScaleAttention

torch = pytest.importorskip("torch")
from torch_reference import conv2d_kernel
from torch_reference import nchw
from torch_reference import nhwc_numpy
from torch_reference import tensor


def ema_reference(x, groups, layer):
    """YOLOonMe/EMA-attention-module's EMA, restated with our weights."""
    functional = torch.nn.functional
    b, c, h, w = x.shape
    group_x = x.reshape(b * groups, -1, h, w)
    size = group_x.shape[1]
    x_h = group_x.mean(dim=3, keepdim=True)
    x_w = group_x.mean(dim=2, keepdim=True).permute(0, 1, 3, 2)
    hw = functional.conv2d(
        torch.cat([x_h, x_w], dim=2),
        conv2d_kernel(layer.pointwise.kernel),
        tensor(layer.pointwise.bias),
    )
    x_h, x_w = torch.split(hw, [h, w], dim=2)
    x1 = functional.group_norm(
        group_x * x_h.sigmoid() * x_w.permute(0, 1, 3, 2).sigmoid(),
        size,
        tensor(layer.norm_gamma),
        tensor(layer.norm_beta),
        eps=1e-5,
    )
    x2 = functional.conv2d(
        group_x, conv2d_kernel(layer.local.kernel), tensor(layer.local.bias), padding=1
    )
    x11 = torch.softmax(x1.mean(dim=(2, 3)).reshape(b * groups, 1, -1), dim=-1)
    x12 = x2.reshape(b * groups, size, -1)
    x21 = torch.softmax(x2.mean(dim=(2, 3)).reshape(b * groups, 1, -1), dim=-1)
    x22 = x1.reshape(b * groups, size, -1)
    weights = (torch.matmul(x11, x12) + torch.matmul(x21, x22)).reshape(b * groups, 1, h, w)
    return (group_x * weights.sigmoid()).reshape(b, c, h, w)


def test_parameter_count_for_256_channels():
    layer = EfficientMultiScaleAttention(groups=32)
    layer.build((None, 8, 8, 256))
    m = 256 // 32
    # 1x1 conv m -> m (+bias), 3x3 conv m -> m (+bias), GroupNorm scale and shift.
    assert layer.count_params() == (m * m + m) + (9 * m * m + m) + 2 * m == 672


@pytest.mark.parametrize("groups", [1, 4])
def test_matches_authors_code(groups):
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 16)).astype("float32")
    layer = EfficientMultiScaleAttention(groups=groups)
    layer(x)
    randomize_weights(layer)
    with torch.no_grad():
        expected = ema_reference(nchw(x), groups, layer)
    np.testing.assert_allclose(to_numpy(layer(x)), nhwc_numpy(expected), rtol=1e-5, atol=1e-5)


def test_one_gate_per_group_and_pixel():
    x = np.random.default_rng(1).normal(size=(2, 5, 7, 16)).astype("float32")
    layer = EfficientMultiScaleAttention(groups=4)
    layer(x)
    randomize_weights(layer)
    outputs, gate = layer(x, return_attention=True)
    assert tuple(gate.shape) == (2, 5, 7, 4)
    expected = x.reshape(2, 5, 7, 4, 4) * to_numpy(gate)[..., None]
    np.testing.assert_allclose(to_numpy(outputs), expected.reshape(x.shape), rtol=1e-5, atol=1e-6)


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match="`groups`"):
        EfficientMultiScaleAttention(groups=3)(np.zeros((1, 4, 4, 16), "float32"))
    with pytest.raises(ValueError, match="`groups`"):
        EfficientMultiScaleAttention(groups=0)
