"""AttentionGate: the authors' grid attention block with the same weights, parameters, inputs."""

import numpy as np
import pytest
from helpers import inflate_weights
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


# Volumes: the authors' GridAttentionBlock3D (sub_sample_factor (2, 2, 2), their CT networks).


def torch_kernel(kernel):
    """Keras ConvND (*k, in, out) -> torch (out, in, *k), for 2-D and 3-D kernels."""
    rank = len(kernel.shape) - 2
    return tensor(kernel).permute(rank + 1, rank, *range(rank))


def channels_first(x):
    return torch.tensor(np.moveaxis(x, -1, 1))


def channels_last_numpy(x):
    return np.moveaxis(x.detach().numpy(), 1, -1)


def grid_attention_3d_reference(x, g, layer):
    """GridAttentionBlock3D, "concatenation" mode, eval: conv3d and trilinear resampling."""
    functional = torch.nn.functional
    s = layer.sub_sample
    theta_x = functional.conv3d(x, torch_kernel(layer.theta.kernel), stride=s)
    phi_g = functional.conv3d(g, torch_kernel(layer.phi.kernel), tensor(layer.phi.bias))
    phi_g = functional.interpolate(phi_g, size=theta_x.shape[2:], mode="trilinear")
    f = functional.relu(theta_x + phi_g)
    psi = functional.conv3d(f, torch_kernel(layer.psi.kernel), tensor(layer.psi.bias))
    alpha = functional.interpolate(torch.sigmoid(psi), size=x.shape[2:], mode="trilinear")
    w_y = functional.conv3d(
        alpha * x, torch_kernel(layer.output_conv.kernel), tensor(layer.output_conv.bias)
    )
    return batch_norm(w_y, layer.output_norm), alpha


def linear_resize_matrix(in_size, out_size):
    """(out, in) weights of linear resampling with half-pixel centres, clamped at the edges."""
    matrix = np.zeros((out_size, in_size))
    for i in range(out_size):
        source = min(max((i + 0.5) * in_size / out_size - 0.5, 0.0), in_size - 1)
        lower = int(np.floor(source))
        upper = min(lower + 1, in_size - 1)
        matrix[i, lower] += 1 - (source - lower)
        matrix[i, upper] += source - lower
    return matrix


def numpy_resize(x, size):
    """Trilinear resampling of channels_last (B, D, H, W, C) as three matrix products."""
    for axis, out_size in zip((1, 2, 3), size):
        matrix = linear_resize_matrix(x.shape[axis], out_size)
        x = np.moveaxis(np.tensordot(matrix, np.moveaxis(x, axis, 0), axes=1), 0, axis)
    return x


def numpy_grid_attention_3d(x, g, layer):
    """Oktay et al.'s 3-D gate in float64 NumPy from the layer's weights, channels_last, eval."""
    weights = {
        w.path.split("/")[-2] + "/" + w.name: to_numpy(w).astype("float64") for w in layer.weights
    }
    s = layer.sub_sample
    batch, depth, height, width, channels = x.shape
    od, oh, ow = depth // s, height // s, width // s
    # theta: an s x s x s convolution with stride s, no padding: a sum over each block.
    blocks = x[:, : od * s, : oh * s, : ow * s].reshape(batch, od, s, oh, s, ow, s, channels)
    theta = np.einsum("bdihjwkc,ijkco->bdhwo", blocks, weights["theta/kernel"])
    phi = np.einsum("bdhwc,co->bdhwo", g, weights["phi/kernel"][0, 0, 0]) + weights["phi/bias"]
    f = np.maximum(theta + numpy_resize(phi, theta.shape[1:4]), 0.0)
    psi = np.einsum("bdhwc,co->bdhwo", f, weights["psi/kernel"][0, 0, 0]) + weights["psi/bias"]
    alpha = numpy_resize(1.0 / (1.0 + np.exp(-psi)), x.shape[1:4])
    w_y = np.einsum("bdhwc,co->bdhwo", alpha * x, weights["output_conv/kernel"][0, 0, 0])
    w_y = w_y + weights["output_conv/bias"]
    norm = layer.output_norm
    scale = weights["output_norm/gamma"] / np.sqrt(
        weights["output_norm/moving_variance"] + norm.epsilon
    )
    return (w_y - weights["output_norm/moving_mean"]) * scale + weights["output_norm/beta"], alpha


VOLUME_SHAPES = [
    ((2, 4, 8, 6, 5), (2, 2, 4, 3, 7)),
    ((1, 5, 7, 9, 4), (1, 2, 3, 4, 6)),  # sizes that do not halve evenly
    ((1, 6, 4, 4, 3), (1, 1, 1, 1, 5)),  # one gating voxel (the bottleneck of a small net)
]


@pytest.mark.parametrize("x_shape, g_shape", VOLUME_SHAPES)
def test_volumes_match_authors_3d_code(x_shape, g_shape):
    x, g = random_pair(x_shape, g_shape)
    layer = AttentionGate(inter_channels=3)
    layer([x, g])
    randomize_weights(layer)
    outputs, alpha = layer([x, g], return_attention=True)
    with torch.no_grad():
        expected, expected_alpha = grid_attention_3d_reference(
            channels_first(x), channels_first(g), layer
        )
    np.testing.assert_allclose(
        to_numpy(alpha), channels_last_numpy(expected_alpha), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        to_numpy(outputs), channels_last_numpy(expected), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("x_shape, g_shape", VOLUME_SHAPES)
def test_volumes_match_a_numpy_reference(x_shape, g_shape):
    x, g = random_pair(x_shape, g_shape, seed=4)
    layer = AttentionGate(inter_channels=3)
    layer([x, g])
    randomize_weights(layer, seed=2)
    outputs, alpha = layer([x, g], return_attention=True)
    expected, expected_alpha = numpy_grid_attention_3d(
        x.astype("float64"), g.astype("float64"), layer
    )
    np.testing.assert_allclose(to_numpy(alpha), expected_alpha, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-5, atol=1e-5)


def test_volume_theta_is_a_2x2x2_stride_2_convolution():
    layer = AttentionGate()
    layer.build([(None, 8, 8, 8, 16), (None, 4, 4, 4, 32)])
    assert tuple(layer.theta.kernel.shape) == (2, 2, 2, 16, 8)
    assert tuple(layer.theta.strides) == (2, 2, 2)
    assert tuple(layer.phi.kernel.shape) == (1, 1, 1, 32, 8)
    assert tuple(layer.output_conv.kernel.shape) == (1, 1, 1, 16, 16)
    # 2-D and 3-D forms hold the same weights by path (kernels gain a depth axis).
    image = AttentionGate()
    image.build([(None, 8, 8, 16), (None, 4, 4, 32)])
    paths = [[w.path.split("/", 1)[1] for w in gate.weights] for gate in (image, layer)]
    assert paths[0] == paths[1]


def test_boring_clip_gives_the_image_output_in_every_frame():
    # Frames all one image (x and g alike), 2-D weights inflated: theta's 2x2 kernel
    # repeated over its 2 depth taps and halved, the 1x1 kernels as 1x1x1.
    x, g = random_pair((2, 8, 6, 5), (2, 4, 3, 7), seed=6)
    image = AttentionGate(inter_channels=3)
    image([x, g])
    randomize_weights(image)
    depth = 4
    clip_x = np.repeat(x[:, None], depth, axis=1)
    clip_g = np.repeat(g[:, None], depth // 2, axis=1)
    volume = AttentionGate(inter_channels=3)
    volume([clip_x, clip_g])
    inflate_weights(image, volume)
    expected, expected_alpha = (to_numpy(t) for t in image([x, g], return_attention=True))
    frames, alphas = (to_numpy(t) for t in volume([clip_x, clip_g], return_attention=True))
    for d in range(depth):
        np.testing.assert_allclose(frames[:, d], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(alphas[:, d], expected_alpha, rtol=1e-5, atol=1e-6)


def test_monai_attention_block_is_another_form():
    # MONAI's AttentionBlock(spatial_dims=3) (its AttentionUnet's gate) is not an
    # option of this layer: it batch-normalises W_g(g), W_x(x) and psi, takes g at
    # x's resolution (no theta sub-sampling, no resampling) and has no output
    # transform W. Its parameter count for the same widths shows the difference.
    attentionunet = pytest.importorskip("monai.networks.nets.attentionunet")
    monai_block = attentionunet.AttentionBlock(spatial_dims=3, f_int=3, f_g=7, f_l=5)
    monai_params = sum(p.numel() for p in monai_block.parameters())
    assert monai_params == (7 * 3 + 3 + 2 * 3) + (5 * 3 + 3 + 2 * 3) + (3 + 1 + 2)
    layer = AttentionGate(inter_channels=3, sub_sample=1)
    layer.build([(None, 4, 4, 4, 5), (None, 4, 4, 4, 7)])
    ours = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert ours == 5 * 3 + (7 * 3 + 3) + (3 + 1) + (5 * 5 + 5) + 2 * 5 != monai_params
