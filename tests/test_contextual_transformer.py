"""CoT block against a NumPy reference of the authors' CotLayer (inference), and its parameters."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import ContextualTransformer

EPS = 1e-5


def random_input(shape=(2, 5, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def randomized(layer, x):
    layer(x)
    randomize_weights(layer)
    return layer


def n(w):
    return to_numpy(w).astype("float64")


def bn(x, norm):
    scale = n(norm.gamma) / np.sqrt(n(norm.moving_variance) + EPS)
    return (x - n(norm.moving_mean)) * scale + n(norm.beta)


def conv_same(x, kernel, groups=1):
    """(B, H, W, Cin) * (k, k, Cin/groups, Cout), zero padding, in `groups` groups."""
    k = kernel.shape[0]
    pad = k // 2
    height, width = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    cin, cout = x.shape[-1] // groups, kernel.shape[-1] // groups
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for g in range(groups):
        for i in range(k):
            for j in range(k):
                patch = padded[:, i : i + height, j : j + width, g * cin : (g + 1) * cin]
                out[..., g * cout : (g + 1) * cout] += (
                    patch @ kernel[i, j, :, g * cout : (g + 1) * cout]
                )
    return out


def numpy_reference(x, layer):
    x = x.astype("float64")
    k = layer.kernel_size
    batch, height, width, channels = x.shape
    sets = channels // 8
    static = np.maximum(bn(conv_same(x, n(layer.key_conv.kernel), groups=4), layer.key_bn), 0)
    embedded = np.concatenate([x, static], -1) @ n(layer.embed_conv.kernel)[0, 0]
    embedded = np.maximum(bn(embedded, layer.embed_bn), 0)
    weights = embedded @ n(layer.weight_conv.kernel)[0, 0] + n(layer.weight_conv.bias)
    # GroupNorm (PyTorch's and Keras's): a set's k*k slots at every position, together.
    grouped = weights.reshape(batch, height, width, sets, k * k)
    axes = (1, 2, 4)
    grouped = (grouped - grouped.mean(axes, keepdims=True)) / np.sqrt(
        grouped.var(axes, keepdims=True) + EPS
    )
    weights = grouped.reshape(weights.shape) * n(layer.weight_norm.gamma) + n(
        layer.weight_norm.beta
    )
    weights = weights.reshape(batch, height, width, sets, k * k)
    values = bn(x @ n(layer.value_conv.kernel)[0, 0], layer.value_bn)
    # The CUDA kernel: output channel c, slot (i, j) reads weight set c % (C/8).
    padded = np.pad(values, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    dynamic = np.zeros_like(values)
    for c in range(channels):
        for slot in range(k * k):
            i, j = divmod(slot, k)
            dynamic[..., c] += (
                padded[:, i : i + height, j : j + width, c] * weights[..., c % sets, slot]
            )
    dynamic = bn(dynamic, layer.dynamic_bn)
    dynamic = dynamic / (1.0 + np.exp(-dynamic))
    pooled = (dynamic + static).mean(axis=(1, 2))
    z = np.maximum(
        bn(pooled @ n(layer.fuse_dense.kernel) + n(layer.fuse_dense.bias), layer.fuse_bn), 0
    )
    logits = (z @ n(layer.select.kernel) + n(layer.select.bias)).reshape(batch, channels, 2)
    fusion = np.exp(logits - logits.max(-1, keepdims=True))
    fusion /= fusion.sum(-1, keepdims=True)
    outputs = dynamic * fusion[:, None, None, :, 0] + static * fusion[:, None, None, :, 1]
    return outputs, weights, fusion


@pytest.mark.parametrize("kernel_size, shape", [(3, (2, 5, 7, 16)), (5, (1, 6, 4, 32))])
def test_matches_numpy_reference(kernel_size, shape):
    x = random_input(shape)
    layer = randomized(ContextualTransformer(kernel_size=kernel_size), x)
    expected, weights, fusion = numpy_reference(x, layer)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(attention["local"]), weights, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(attention["fusion"]), fusion, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(attention["fusion"]).sum(-1), 1.0, rtol=1e-5)


def test_parameter_count_for_256_channels():
    layer = ContextualTransformer(kernel_size=3)
    layer.build((None, 8, 8, 256))
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    # CotLayer(256, 3) of the authors' code: 417,248 parameters (+2,048 BN statistics).
    assert trainable == 417248
    assert layer.count_params() == 417248 + 2048


def test_channels_must_be_a_multiple_of_8():
    with pytest.raises(ValueError, match="divisible by 8"):
        ContextualTransformer()(random_input((1, 4, 4, 12)))
