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


def ema_volume_reference(x, groups, layer):
    """EMA over (b, d, h, w, c) volumes in NumPy (float64), from the layer's weights.

    Per group of m channels: D, H and W strips (means over the other two axes)
    through the shared 1x1x1 conv, three sigmoid gates, GroupNorm with one
    channel a group; a 3x3x3 "same" conv; the cross-spatial weights over
    D * H * W voxels. Returns the output and the gate (b, d, h, w, groups).
    """
    weights = {w.path.split("/", 1)[1]: to_numpy(w).astype(np.float64) for w in layer.weights}
    b, d, h, w, c = x.shape
    m = c // groups
    # (b, d, h, w, groups, m) -> (b * groups, d, h, w, m)
    g = x.astype(np.float64).reshape(b, d, h, w, groups, m)
    g = g.transpose(0, 4, 1, 2, 3, 5).reshape(b * groups, d, h, w, m)

    def sigmoid(t):
        return 1 / (1 + np.exp(-t))

    def pointwise(t):
        return t @ weights["pointwise/kernel"][0, 0, 0] + weights["pointwise/bias"]

    gate_d = sigmoid(pointwise(g.mean(axis=(2, 3))))[:, :, None, None]
    gate_h = sigmoid(pointwise(g.mean(axis=(1, 3))))[:, None, :, None]
    gate_w = sigmoid(pointwise(g.mean(axis=(1, 2))))[:, None, None, :]
    scaled = g * gate_d * gate_h * gate_w
    mean = scaled.mean(axis=(1, 2, 3), keepdims=True)
    variance = scaled.var(axis=(1, 2, 3), keepdims=True)
    x1 = (scaled - mean) / np.sqrt(variance + 1e-5) * weights["norm_gamma"] + weights["norm_beta"]

    kernel = weights["local/kernel"]  # (3, 3, 3, m, m)
    padded = np.pad(g, ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0)))
    x2 = np.zeros_like(g) + weights["local/bias"]
    for i, j, k in np.ndindex(3, 3, 3):
        x2 += padded[:, i : i + d, j : j + h, k : k + w] @ kernel[i, j, k]

    def softmax(t):
        e = np.exp(t - t.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    s1 = softmax(x1.mean(axis=(1, 2, 3)))  # (b * groups, m)
    s2 = softmax(x2.mean(axis=(1, 2, 3)))
    logits = np.einsum("nc,ndhwc->ndhw", s1, x2) + np.einsum("nc,ndhwc->ndhw", s2, x1)
    gate = sigmoid(logits)
    out = (g * gate[..., None]).reshape(b, groups, d, h, w, m)
    out = out.transpose(0, 2, 3, 4, 1, 5).reshape(b, d, h, w, c)
    return out, gate.reshape(b, groups, d, h, w).transpose(0, 2, 3, 4, 1)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("groups", [1, 4])
def test_volume_matches_numpy_reference(groups, data_format):
    x = np.random.default_rng(2).normal(size=(2, 4, 6, 5, 16)).astype("float32")
    fed = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer = EfficientMultiScaleAttention(groups=groups, data_format=data_format)
    layer(fed)
    randomize_weights(layer)
    outputs, gate = layer(fed, return_attention=True)
    outputs, gate = to_numpy(outputs), to_numpy(gate)
    if data_format == "channels_first":
        outputs, gate = np.moveaxis(outputs, 1, -1), np.moveaxis(gate, 1, -1)
    expected, expected_gate = ema_volume_reference(x, groups, layer)
    assert gate.shape == (2, 4, 6, 5, groups)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gate, expected_gate, rtol=1e-5, atol=1e-6)


def test_volume_has_the_image_sublayers_with_a_depth_axis():
    image = EfficientMultiScaleAttention(groups=32)
    image.build((None, 8, 8, 256))
    volume = EfficientMultiScaleAttention(groups=32)
    volume.build((None, 4, 8, 8, 256))
    m = 8
    # The 3x3 kernel becomes 3x3x3; the 1x1 conv and GroupNorm keep their sizes.
    assert volume.count_params() == (m * m + m) + (27 * m * m + m) + 2 * m == 1824
    # Same paths in the same order; each kernel gains a leading depth axis.
    for image_weight, volume_weight in zip(image.weights, volume.weights, strict=True):
        assert image_weight.path.split("/", 1)[1] == volume_weight.path.split("/", 1)[1]
        shape, volume_shape = tuple(image_weight.shape), tuple(volume_weight.shape)
        expected = (shape[0], *shape) if len(shape) == 4 else shape  # k x k -> k x k x k
        assert volume_shape == expected
