"""CBAM: parameter counts, and every gate against a NumPy reference of the paper."""

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention import ops as ka_ops
from keras_attention.layers import CBAM
from keras_attention.layers import ChannelGate
from keras_attention.layers import SpatialGate


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def channel_gate_reference(x, w1, b1, w2, b2):
    """(B, H, W, C) -> (B, C): one MLP on the mean and on the max, summed."""

    def mlp(v):
        return np.maximum(v @ w1 + b1, 0.0) @ w2 + b2

    return sigmoid(mlp(x.mean(axis=(1, 2))) + mlp(x.max(axis=(1, 2))))


def conv_same(x, kernel):
    """(B, H, W, Cin) * (k, k, Cin, 1) with zero 'same' padding, no bias."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (1,))
    for i in range(k):
        for j in range(k):
            out += padded[:, i : i + height, j : j + width, :] @ kernel[i, j]
    return out


def spatial_gate_reference(x, kernel, gamma, beta, mean, variance, epsilon):
    """(B, H, W, C) -> (B, H, W, 1): conv over [max, mean] + inference BN."""
    pooled = np.concatenate([x.max(axis=-1, keepdims=True), x.mean(axis=-1, keepdims=True)], -1)
    logits = conv_same(pooled, kernel)
    return sigmoid((logits - mean) / np.sqrt(variance + epsilon) * gamma + beta)


def weights_of(layer):
    return [to_numpy(w) for w in layer.weights]


def random_input(shape=(2, 5, 7, 32), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_parameter_counts_for_256_channels():
    layer = CBAM(reduction=16, kernel_size=7)
    layer.build((None, 8, 8, 256))
    assert layer.channel_gate.count_params() == 8464  # 256*16+16 + 16*256+256
    assert layer.spatial_gate.conv.count_params() == 98  # 7*7*2, no bias
    # BatchNormalization of the single logit map: gamma, beta, mean, variance.
    assert layer.spatial_gate.norm.count_params() == 4
    assert layer.count_params() == 8464 + 98 + 4


def test_channel_gate_matches_numpy():
    layer = ChannelGate(reduction=4)
    x = random_input()
    layer(x)
    randomize_weights(layer)
    outputs, gate = layer(x, return_attention=True)
    expected_gate = channel_gate_reference(x, *weights_of(layer))
    np.testing.assert_allclose(to_numpy(gate), expected_gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(outputs), x * expected_gate[:, None, None, :], rtol=1e-5, atol=1e-5
    )


def test_spatial_gate_matches_numpy():
    layer = SpatialGate(kernel_size=5)
    x = random_input()
    layer(x)
    randomize_weights(layer)
    outputs, gate = layer(x, return_attention=True)
    assert tuple(gate.shape) == (2, 5, 7, 1)
    kernel, gamma, beta, mean, variance = weights_of(layer)
    expected_gate = spatial_gate_reference(
        x, kernel, gamma, beta, mean, variance, layer.norm.epsilon
    )
    np.testing.assert_allclose(to_numpy(gate), expected_gate, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(outputs), x * expected_gate, rtol=1e-5, atol=1e-5)


def test_cbam_is_channel_then_spatial():
    layer = CBAM(reduction=4, kernel_size=3)
    x = random_input()
    layer(x)
    randomize_weights(layer)
    outputs, attention = layer(x, return_attention=True)
    w1, b1, w2, b2, kernel, gamma, beta, mean, variance = weights_of(layer)
    channel = channel_gate_reference(x, w1, b1, w2, b2)
    refined = x * channel[:, None, None, :]
    spatial = spatial_gate_reference(
        refined, kernel, gamma, beta, mean, variance, layer.spatial_gate.norm.epsilon
    )
    np.testing.assert_allclose(to_numpy(attention["channel"]), channel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(attention["spatial"]), spatial, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(outputs), refined * spatial, rtol=1e-5, atol=1e-5)


def test_channels_first_attention_shapes():
    layer = CBAM(reduction=4, data_format="channels_first")
    _, attention = layer(random_input((2, 32, 5, 7)), return_attention=True)
    assert tuple(attention["channel"].shape) == (2, 32)
    assert tuple(attention["spatial"].shape) == (2, 1, 5, 7)


@pytest.mark.parametrize("cls", [SpatialGate, CBAM])
@pytest.mark.parametrize("kernel_size", [0, 4, 3.0, True])
def test_kernel_size_must_be_a_positive_odd_int(cls, kernel_size):
    with pytest.raises(ValueError, match="`kernel_size`"):
        cls(kernel_size=kernel_size)


@pytest.mark.parametrize("cls", [ChannelGate, CBAM])
def test_reduction_must_be_positive(cls):
    with pytest.raises(ValueError, match="`reduction`"):
        cls(reduction=0)


@pytest.mark.parametrize(
    "reduction, units",
    [(4, 4), (16, 1), (128, 1)],  # 128 on 16 channels: clamped to 1
)
def test_bottleneck_is_channels_over_reduction_at_least_one(reduction, units):
    # As SqueezeExcitation's max(1, C // reduction): documented, not refused.
    layer = CBAM(reduction=reduction)
    outputs = layer(np.ones((1, 5, 5, 16), "float32"))
    assert outputs.shape == (1, 5, 5, 16)
    assert layer.channel_gate.hidden.units == units
    assert layer.channel_gate.logits.units == 16
    assert "max(1, C // reduction)" in CBAM.__doc__


def test_sublayers_share_the_dtype_policy():
    layer = CBAM(reduction=4, dtype="mixed_bfloat16")
    layer(random_input())
    for sublayer in (layer.channel_gate, layer.spatial_gate):
        assert sublayer.dtype_policy.name == "mixed_bfloat16"
    assert keras.backend.standardize_dtype(layer.spatial_gate.conv.compute_dtype) == "bfloat16"


@pytest.mark.parametrize("axis", [-1, 1])
def test_bfloat16_channel_mean_accumulates_in_float32(axis):
    # SpatialGate's mean over 512 channels near 3: a bfloat16 running sum would
    # stall (its spacing near 1000 is 8); the result must match the float32 mean.
    x = np.random.default_rng(3).normal(3.0, 1.0, size=(2, 6, 5, 512)).astype("float32")
    if axis == 1:
        x = x.transpose(0, 3, 1, 2)
    x = keras.ops.cast(x, "bfloat16")
    mean = ka_ops.mean(x, axis, keepdims=True)
    assert keras.backend.standardize_dtype(mean.dtype) == "bfloat16"
    assert tuple(mean.shape) == tuple(np.mean(to_numpy(x), axis=axis, keepdims=True).shape)
    np.testing.assert_allclose(
        to_numpy(mean), to_numpy(x).mean(axis=axis, keepdims=True), rtol=1e-2
    )


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("axis", [(1, 2), -1])
def test_mean_matches_numpy(dtype, axis):
    # float32 divides the sum (cheaper gradient); float16 keeps keras.ops.mean.
    x = np.random.default_rng(4).normal(2.0, 1.0, size=(2, 7, 5, 16)).astype("float32")
    mean = ka_ops.mean(keras.ops.cast(x, dtype), axis)
    assert keras.backend.standardize_dtype(mean.dtype) == dtype
    np.testing.assert_allclose(
        to_numpy(mean), x.mean(axis=axis), rtol=2e-3 if dtype == "float16" else 1e-6
    )


# Volumes and clips (issue 27): the same gates over depth, height and width.


def conv3d_same(x, kernel):
    """(B, D, H, W, Cin) * (k, k, k, Cin, 1) with zero 'same' padding, no bias."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (pad, pad), (0, 0)))
    depth, height, width = x.shape[1:4]
    out = np.zeros(x.shape[:4] + (1,))
    for d in range(k):
        for i in range(k):
            for j in range(k):
                out += padded[:, d : d + depth, i : i + height, j : j + width, :] @ kernel[d, i, j]
    return out


def channel_gate_reference_3d(x, w1, b1, w2, b2):
    """(B, D, H, W, C) -> (B, C): the shared MLP on the mean and max over all three axes."""

    def mlp(v):
        return np.maximum(v @ w1 + b1, 0.0) @ w2 + b2

    return sigmoid(mlp(x.mean(axis=(1, 2, 3))) + mlp(x.max(axis=(1, 2, 3))))


def spatial_gate_reference_3d(x, kernel, gamma, beta, mean, variance, epsilon):
    """(B, D, H, W, C) -> (B, D, H, W, 1): k x k x k conv over [max, mean] + inference BN."""
    pooled = np.concatenate([x.max(axis=-1, keepdims=True), x.mean(axis=-1, keepdims=True)], -1)
    logits = conv3d_same(pooled, kernel)
    return sigmoid((logits - mean) / np.sqrt(variance + epsilon) * gamma + beta)


def test_volume_parameter_counts_for_256_channels():
    layer = CBAM(reduction=16, kernel_size=7)
    layer.build((None, 4, 8, 8, 256))
    assert layer.channel_gate.count_params() == 8464  # the MLP does not see the rank
    assert tuple(layer.spatial_gate.conv.kernel.shape) == (7, 7, 7, 2, 1)
    assert layer.spatial_gate.conv.count_params() == 686  # 7*7*7*2, no bias
    assert layer.count_params() == 8464 + 686 + 4


def test_volume_channel_gate_pools_depth_height_and_width():
    layer = ChannelGate(reduction=4)
    x = random_input((2, 3, 5, 4, 32))
    layer(x)
    randomize_weights(layer)
    outputs, gate = layer(x, return_attention=True)
    expected_gate = channel_gate_reference_3d(x, *weights_of(layer))
    np.testing.assert_allclose(to_numpy(gate), expected_gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(outputs), x * expected_gate[:, None, None, None, :], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_spatial_gate_matches_numpy(data_format):
    layer = SpatialGate(kernel_size=3, data_format=data_format)
    x = random_input((2, 4, 5, 6, 8), seed=1)
    layer(np.moveaxis(x, -1, 1) if data_format == "channels_first" else x)
    randomize_weights(layer)
    kernel, gamma, beta, mean, variance = weights_of(layer)
    assert kernel.shape == (3, 3, 3, 2, 1)
    expected_gate = spatial_gate_reference_3d(
        x, kernel, gamma, beta, mean, variance, layer.norm.epsilon
    )
    if data_format == "channels_first":
        outputs, gate = layer(np.moveaxis(x, -1, 1), return_attention=True)
        outputs, gate = np.moveaxis(to_numpy(outputs), 1, -1), np.moveaxis(to_numpy(gate), 1, -1)
    else:
        outputs, gate = (to_numpy(t) for t in layer(x, return_attention=True))
    assert gate.shape == (2, 4, 5, 6, 1)
    np.testing.assert_allclose(gate, expected_gate, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs, x * expected_gate, rtol=1e-5, atol=1e-5)


def test_volume_cbam_is_channel_then_spatial():
    layer = CBAM(reduction=4, kernel_size=5)
    x = random_input((2, 5, 4, 6, 16), seed=2)
    layer(x)
    randomize_weights(layer)
    outputs, attention = layer(x, return_attention=True)
    w1, b1, w2, b2, kernel, gamma, beta, mean, variance = weights_of(layer)
    channel = channel_gate_reference_3d(x, w1, b1, w2, b2)
    refined = x * channel[:, None, None, None, :]
    spatial = spatial_gate_reference_3d(
        refined, kernel, gamma, beta, mean, variance, layer.spatial_gate.norm.epsilon
    )
    np.testing.assert_allclose(to_numpy(attention["channel"]), channel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(attention["spatial"]), spatial, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(outputs), refined * spatial, rtol=1e-5, atol=1e-5)


def test_volume_spatial_gate_weights_inflate_from_the_image_form():
    """A 2-D gate's k x k kernel centred in k x k x k sees a boring clip's frames as the image."""
    image_layer = SpatialGate(kernel_size=5)
    x = random_input((2, 6, 7, 8), seed=4)
    image_layer(x)
    randomize_weights(image_layer)
    volume_layer = SpatialGate(kernel_size=5)
    volume_layer(np.repeat(x[:, None], 3, axis=1))
    kernel = np.zeros((5, 5, 5, 2, 1), "float32")
    kernel[2] = to_numpy(image_layer.conv.kernel)
    volume_layer.set_weights([kernel] + image_layer.get_weights()[1:])
    # The clip's frames differ, so zero padding in depth is never what makes them agree.
    clip = np.stack([x, 2 * x, -x], axis=1)
    expected = [to_numpy(image_layer(frame)) for frame in (x, 2 * x, -x)]
    frames = to_numpy(volume_layer(clip))
    for d in range(3):
        np.testing.assert_allclose(frames[:, d], expected[d], rtol=1e-5, atol=1e-5)
