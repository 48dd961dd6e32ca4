"""AttentionGate: the authors' grid attention block with the same weights, parameters, inputs."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import AttentionGate

torch = pytest.importorskip("torch")
from torch_reference import batch_norm
from torch_reference import conv2d_kernel
from torch_reference import nchw
from torch_reference import nhwc_numpy
from torch_reference import tensor


def grid_attention_reference(x, g, layer):
    """ozan-oktay/Attention-Gated-Networks' GridAttentionBlock2D, "concatenation" mode, eval."""
    functional = torch.nn.functional
    s = layer.sub_sample
    theta_x = functional.conv2d(x, conv2d_kernel(layer.theta.kernel), stride=s)
    phi_g = functional.conv2d(g, conv2d_kernel(layer.phi.kernel), tensor(layer.phi.bias))
    phi_g = functional.interpolate(phi_g, size=theta_x.shape[2:], mode="bilinear")
    f = functional.relu(theta_x + phi_g)
    psi = functional.conv2d(f, conv2d_kernel(layer.psi.kernel), tensor(layer.psi.bias))
    alpha = functional.interpolate(torch.sigmoid(psi), size=x.shape[2:], mode="bilinear")
    w_y = functional.conv2d(
        alpha * x, conv2d_kernel(layer.output_conv.kernel), tensor(layer.output_conv.bias)
    )
    return batch_norm(w_y, layer.output_norm), alpha


def random_pair(x_shape, g_shape, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=x_shape).astype("float32"),
        rng.normal(size=g_shape).astype("float32"),
    )


def test_parameter_count_for_256_channels():
    layer = AttentionGate()
    layer.build([(None, 16, 16, 256), (None, 8, 8, 256)])
    theta = 2 * 2 * 256 * 128  # 2x2 stride-2 conv, no bias
    phi, psi = 256 * 128 + 128, 128 + 1
    output = (256 * 256 + 256) + 4 * 256  # 1x1 conv + BatchNorm
    assert layer.count_params() == theta + phi + psi + output == 230913


@pytest.mark.parametrize(
    "x_shape, g_shape, sub_sample",
    [
        ((2, 8, 10, 6), (2, 4, 5, 12), 2),
        ((2, 9, 7, 6), (2, 3, 2, 4), 2),  # sizes that do not halve evenly
        ((1, 6, 6, 4), (1, 3, 3, 8), 1),  # the paper's 1x1 theta
    ],
)
def test_matches_authors_code(x_shape, g_shape, sub_sample):
    x, g = random_pair(x_shape, g_shape)
    layer = AttentionGate(inter_channels=3, sub_sample=sub_sample)
    layer([x, g])
    randomize_weights(layer)
    outputs, alpha = layer([x, g], return_attention=True)
    with torch.no_grad():
        expected, expected_alpha = grid_attention_reference(nchw(x), nchw(g), layer)
    np.testing.assert_allclose(to_numpy(alpha), nhwc_numpy(expected_alpha), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), nhwc_numpy(expected), rtol=1e-5, atol=1e-5)


def test_alpha_is_one_map_at_the_skip_resolution():
    x, g = random_pair((2, 8, 6, 4), (2, 4, 3, 8))
    _, alpha = AttentionGate()([x, g], return_attention=True)
    alpha = to_numpy(alpha)
    assert alpha.shape == (2, 8, 6, 1)
    assert ((alpha > 0) & (alpha < 1)).all()


def test_gating_signal_changes_the_attention():
    x, g = random_pair((1, 8, 8, 4), (1, 4, 4, 8))
    layer = AttentionGate()
    layer([x, g])
    randomize_weights(layer)
    _, alpha = layer([x, g], return_attention=True)
    _, alpha_other = layer([x, -g], return_attention=True)
    assert np.abs(to_numpy(alpha) - to_numpy(alpha_other)).max() > 1e-3


def test_default_inter_channels_is_half_of_x():
    layer = AttentionGate()
    layer.build([(None, 8, 8, 10), (None, 4, 4, 3)])
    assert tuple(layer.theta.kernel.shape) == (2, 2, 10, 5)
    assert tuple(layer.phi.kernel.shape) == (1, 1, 3, 5)
