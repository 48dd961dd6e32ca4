"""DANet's position and channel modules against NumPy references, and the head's structure."""

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import ChannelAttention
from keras_attention.layers import DualAttention
from keras_attention.layers import PositionAttention


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def random_input(shape=(2, 5, 7, 16), scale=1.0, seed=0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype("float32")


def position_reference(x, layer):
    """PAM in float64 from the layer's weights: softmax over positions of q k^T (unscaled).

    Any rank: (B, H, W, C) images or (B, D, H, W, C) volumes, positions row-major.
    """
    wq, bq, wk, bk, wv, bv = (
        to_numpy(w).astype("float64")
        for conv in (layer.query, layer.key, layer.value)
        for w in (conv.kernel, conv.bias)
    )
    gamma = float(to_numpy(layer.gamma))
    batch, channels = x.shape[0], x.shape[-1]
    flat = x.reshape(batch, -1, channels).astype("float64")
    q = flat @ wq.reshape(channels, -1) + bq
    k = flat @ wk.reshape(channels, -1) + bk
    v = flat @ wv.reshape(channels, -1) + bv
    attention = softmax(q @ k.transpose(0, 2, 1))
    return (gamma * attention @ v + flat).reshape(x.shape), attention


def channel_reference(x, gamma):
    """CAM in float64 with A = the (C, H*W) (or (C, D*H*W)) feature matrix of each map.

    The authors' code normalises max(A A^T) - A A^T row by row; a softmax does
    not change under a per-row shift, so that is softmax(-A A^T).
    """
    batch, channels = x.shape[0], x.shape[-1]
    a = x.reshape(batch, -1, channels).transpose(0, 2, 1).astype("float64")
    attention = softmax(-(a @ a.transpose(0, 2, 1)))
    out = (attention @ a).transpose(0, 2, 1).reshape(x.shape)
    return gamma * out + x, attention


def randomized(layer, x):
    layer(x)
    randomize_weights(layer)
    return layer


def test_position_attention_matches_numpy():
    x = random_input()
    layer = randomized(PositionAttention(reduction=4), x)
    expected, expected_attention = position_reference(x, layer)
    outputs, attention = layer(x, return_attention=True)
    assert tuple(attention.shape) == (2, 35, 35)
    np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    # The fused path (dot_product_attention) gives the same result.
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)


def test_position_attention_channels_first_matches_numpy():
    x = random_input()
    layer = randomized(
        PositionAttention(reduction=4, data_format="channels_first"), x.transpose(0, 3, 1, 2)
    )
    expected, _ = position_reference(x, layer)
    outputs = to_numpy(layer(x.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(outputs.transpose(0, 2, 3, 1), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [PositionAttention, ChannelAttention])
def test_identity_at_initialisation(cls):
    x = random_input()
    layer = cls()
    np.testing.assert_array_equal(to_numpy(layer(x)), x)
    assert [w.path.split("/")[-1] for w in layer.weights if w.shape == ()] == ["gamma"]


def test_channel_attention_matches_numpy():
    x = random_input()
    layer = ChannelAttention()
    layer(x)
    layer.gamma.assign(1.0)
    expected, expected_attention = channel_reference(x, 1.0)
    outputs, attention = layer(x, return_attention=True)
    assert tuple(attention.shape) == (2, 16, 16)
    np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)


def test_channel_attention_has_no_weights_but_gamma():
    layer = ChannelAttention()
    layer.build((None, None, None, 64))
    assert [w.path.split("/")[-1] for w in layer.weights] == ["gamma"]


def test_channel_energy_beyond_float16_range():
    # Energies sum 64 products of values ~40: formed in float16 they would
    # overflow to inf and give NaNs.
    x = random_input((2, 8, 8, 16), scale=40.0)
    assert (np.einsum("bhwc,bhwc->bc", x, x) > 65504).any()
    layer = ChannelAttention(dtype="mixed_float16")
    layer(x)
    layer.gamma.assign(0.5)
    outputs = to_numpy(layer(x))
    assert np.isfinite(outputs).all()
    expected, _ = channel_reference(x.astype("float16").astype("float32"), 0.5)
    np.testing.assert_allclose(outputs, expected, rtol=1e-2, atol=0.5)


def test_dual_attention_head_structure():
    layer = DualAttention(filters=24, reduction=2)
    x = random_input((2, 5, 7, 32))
    outputs, attention = layer(x, return_attention=True)
    assert tuple(outputs.shape) == (2, 5, 7, 24)
    assert tuple(attention["position"].shape) == (2, 35, 35)
    assert tuple(attention["channel"].shape) == (2, 8, 8)  # C // 4 inner channels
    for name in ("position", "channel"):
        conv_in = getattr(layer, f"{name}_in_conv")
        conv_out = getattr(layer, f"{name}_out_conv")
        assert tuple(conv_in.kernel.shape) == (3, 3, 32, 8) and not conv_in.use_bias
        assert tuple(conv_out.kernel.shape) == (3, 3, 8, 24) and not conv_out.use_bias
    # PAM's query/key channels are the inner channels // reduction.
    assert tuple(layer.position_attention.query.kernel.shape) == (1, 1, 8, 4)
    assert DualAttention()(x).shape == x.shape


def test_dual_attention_is_the_sum_of_its_branches():
    x = random_input((2, 5, 7, 32))
    layer = randomized(DualAttention(reduction=2), x)

    def branch(name, module):
        def conv_bn_relu(prefix, t):
            conv = getattr(layer, f"{prefix}_conv")
            norm = getattr(layer, f"{prefix}_bn")
            return keras.ops.relu(norm(conv(t), training=False))

        return conv_bn_relu(f"{name}_out", module(conv_bn_relu(f"{name}_in", x)))

    expected = to_numpy(branch("position", layer.position_attention)) + to_numpy(
        branch("channel", layer.channel_attention)
    )
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-4)


def test_dual_attention_needs_four_channels():
    with pytest.raises(ValueError, match="at least 4"):
        DualAttention()(random_input((1, 3, 3, 3)))


@pytest.mark.parametrize(
    "cls, kwargs, name",
    [
        (PositionAttention, {"reduction": 0}, "reduction"),
        (PositionAttention, {"reduction": 2.0}, "reduction"),
        (DualAttention, {"filters": 0}, "filters"),
        (DualAttention, {"reduction": -8}, "reduction"),
        (ChannelAttention, {"data_format": "NHWC"}, "data_format"),
    ],
)
def test_bad_arguments_name_the_argument(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        cls(**kwargs)


# Volumes and clips (issue 27): attention over the D*H*W voxels.


def conv3d_same(x, kernel):
    """(B, D, H, W, Cin) * (k, k, k, Cin, Cout), zero 'same' padding, no bias, float64."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (pad, pad), (0, 0)))
    depth, height, width = x.shape[1:4]
    out = 0.0
    for d in range(k):
        for i in range(k):
            for j in range(k):
                window = padded[:, d : d + depth, i : i + height, j : j + width, :]
                out = out + window @ kernel[d, i, j].astype("float64")
    return out


def batch_norm_inference(x, norm):
    gamma, beta, mean, variance = (to_numpy(w).astype("float64") for w in norm.weights)
    return (x - mean) / np.sqrt(variance + norm.epsilon) * gamma + beta


def test_volume_position_attention_matches_numpy():
    x = random_input((2, 3, 4, 5, 16), seed=1)
    layer = randomized(PositionAttention(reduction=4), x)
    assert tuple(layer.query.kernel.shape) == (1, 1, 1, 16, 4)
    expected, expected_attention = position_reference(x, layer)
    outputs, attention = layer(x, return_attention=True)
    assert tuple(attention.shape) == (2, 60, 60)  # every voxel to every voxel
    np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)


def test_volume_position_attention_channels_first_matches_numpy():
    x = random_input((2, 3, 4, 5, 16), seed=2)
    first = np.moveaxis(x, -1, 1)
    layer = randomized(PositionAttention(reduction=4, data_format="channels_first"), first)
    expected, _ = position_reference(x, layer)
    outputs = np.moveaxis(to_numpy(layer(first)), 1, -1)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)


def test_volume_channel_attention_sums_energies_over_every_voxel():
    x = random_input((2, 3, 4, 5, 16), seed=3)
    layer = ChannelAttention()
    layer(x)
    layer.gamma.assign(0.7)
    expected, expected_attention = channel_reference(x, 0.7)
    outputs, attention = layer(x, return_attention=True)
    assert tuple(attention.shape) == (2, 16, 16)
    np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)


def test_volume_dual_attention_matches_numpy():
    """The whole head in float64: 3x3x3 conv + BN + ReLU, PAM / CAM over voxels, summed."""
    x = random_input((2, 3, 4, 5, 16), seed=4)
    layer = randomized(DualAttention(filters=12, reduction=2), x)
    assert tuple(layer.position_in_conv.kernel.shape) == (3, 3, 3, 16, 4)
    assert tuple(layer.channel_out_conv.kernel.shape) == (3, 3, 3, 4, 12)

    def conv_bn_relu(prefix, t):
        conv = to_numpy(getattr(layer, f"{prefix}_conv").kernel)
        return np.maximum(
            batch_norm_inference(conv3d_same(t, conv), getattr(layer, f"{prefix}_bn")), 0
        )

    position, position_map = position_reference(
        conv_bn_relu("position_in", x), layer.position_attention
    )
    gamma = float(to_numpy(layer.channel_attention.gamma))
    channel, channel_map = channel_reference(conv_bn_relu("channel_in", x), gamma)
    expected = conv_bn_relu("position_out", position) + conv_bn_relu("channel_out", channel)
    outputs, attention = layer(x, return_attention=True)
    assert tuple(outputs.shape) == (2, 3, 4, 5, 12)
    np.testing.assert_allclose(to_numpy(attention["position"]), position_map, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(attention["channel"]), channel_map, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-4)
    assert tuple(layer.compute_output_shape((2, 3, 4, 5, 16))) == (2, 3, 4, 5, 12)
