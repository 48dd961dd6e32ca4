"""LambdaLayer: timm's LambdaLayer in both position modes, a NumPy reference, the key softmax axis."""

import functools

import keras
import numpy as np
import pytest
import torch
from helpers import images
from helpers import randomized_layer
from helpers import to_numpy
from timm_import import import_timm

from keras_attention.layers import LambdaLayer

lambda_layer = import_timm().layers.lambda_layer


randomized = functools.partial(randomized_layer, LambdaLayer)


def batch_norm(t, norm):
    w = {v.name: to_numpy(v).astype("float64") for v in norm.weights}
    return (t - w["moving_mean"]) / np.sqrt(w["moving_variance"] + norm.epsilon) * w["gamma"] + w[
        "beta"
    ]


def reference(layer, x):
    """The lambda layer in inference mode, in float64, position by position."""
    batch, height, width, channels = x.shape
    heads, k = layer.num_heads, layer.key_dim
    v_dim = channels // heads
    qkv = x.astype("float64") @ to_numpy(layer.qkv.kernel)[0, 0].astype("float64")
    q = batch_norm(qkv[..., : heads * k], layer.norm_q).reshape(batch, height, width, heads, k)
    keys = qkv[..., heads * k : heads * k + k].reshape(batch, -1, k)
    v = batch_norm(qkv[..., heads * k + k :], layer.norm_v)  # (batch, H, W, V)
    keys = np.exp(keys - keys.max(1, keepdims=True))
    keys /= keys.sum(1, keepdims=True)  # softmax over positions
    content = np.einsum("bmk,bmv->bkv", keys, v.reshape(batch, -1, v_dim))
    outputs = np.zeros((batch, height, width, heads, v_dim))
    for y in range(height):
        for x_ in range(width):
            position = np.zeros((batch, k, v_dim))
            if layer.context_size is None:
                table = to_numpy(layer.position_embedding).astype("float64")
                for my in range(height):
                    for mx in range(width):
                        embedding = table[my - y + height - 1, mx - x_ + width - 1]
                        position += embedding[None, :, None] * v[:, my, mx, None, :]
            else:
                kernel = to_numpy(layer.position_conv.kernel)[:, :, 0].astype("float64")
                r = layer.context_size
                for i in range(r):
                    for j in range(r):
                        my, mx = y + i - r // 2, x_ + j - r // 2
                        if 0 <= my < height and 0 <= mx < width:
                            position += kernel[i, j][None, :, None] * v[:, my, mx, None, :]
                position += to_numpy(layer.position_conv.bias)[None, :, None]
            lambda_n = content + position  # (batch, k, V)
            outputs[:, y, x_] = np.einsum("bhk,bkv->bhv", q[:, y, x_], lambda_n)
    return outputs.reshape(x.shape), keys, content


@pytest.mark.parametrize("context_size", [3, None], ids=["local", "global"])
def test_matches_numpy_reference(context_size):
    x = images((2, 4, 5, 8), seed=1)
    feature_size = (4, 5) if context_size is None else None
    layer = randomized(
        x.shape, num_heads=2, key_dim=3, context_size=context_size, feature_size=feature_size
    )
    expected, keys, content = reference(layer, x)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)
    assert tuple(attention["keys"].shape) == (2, 20, 3)
    np.testing.assert_allclose(to_numpy(attention["keys"]), keys, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(to_numpy(attention["keys"]).sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(attention["content_lambda"]), content, rtol=1e-4, atol=1e-6)


def to_timm(layer, channels):
    module = lambda_layer.LambdaLayer(
        channels,
        feat_size=layer.feature_size,
        num_heads=layer.num_heads,
        dim_head=layer.key_dim,
        r=layer.context_size,
        qkv_bias=layer.use_bias,
    ).eval()
    with torch.no_grad():
        module.qkv.weight.copy_(
            torch.from_numpy(to_numpy(layer.qkv.kernel)[0, 0].T[..., None, None])
        )
        if layer.use_bias:
            module.qkv.bias.copy_(torch.from_numpy(to_numpy(layer.qkv.bias)))
        for ours, theirs in ((layer.norm_q, module.norm_q), (layer.norm_v, module.norm_v)):
            theirs.weight.copy_(torch.from_numpy(to_numpy(ours.gamma)))
            theirs.bias.copy_(torch.from_numpy(to_numpy(ours.beta)))
            theirs.running_mean.copy_(torch.from_numpy(to_numpy(ours.moving_mean)))
            theirs.running_var.copy_(torch.from_numpy(to_numpy(ours.moving_variance)))
        if layer.context_size is None:
            module.pos_emb.copy_(torch.from_numpy(to_numpy(layer.position_embedding)))
        else:
            # (r, r, 1, K) -> timm's Conv3d (K, 1, r, r, 1).
            kernel = to_numpy(layer.position_conv.kernel)[:, :, 0].transpose(2, 0, 1)
            module.conv_lambda.weight.copy_(torch.from_numpy(kernel[:, None, :, :, None]))
            module.conv_lambda.bias.copy_(torch.from_numpy(to_numpy(layer.position_conv.bias)))
    return module


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_heads": 4, "key_dim": 8, "context_size": 5},
        {"num_heads": 2, "key_dim": 4, "context_size": None, "feature_size": (5, 7)},
        {"num_heads": 2, "key_dim": 4, "context_size": 3, "use_bias": True},
    ],
    ids=["local", "global", "bias"],
)
def test_matches_timm_with_the_same_weights(kwargs):
    x = images((2, 5, 7, 16), seed=2)
    layer = randomized(x.shape, **kwargs)
    module = to_timm(layer, 16)
    with torch.no_grad():
        expected = module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_parameters_at_256_channels():
    layer = LambdaLayer()  # 4 heads, key_dim 16, r = 9
    layer(images((1, 9, 9, 256)))
    # qkv 256 x (4*16 + 16 + 64); BN of q (64) and v (64), 4 numbers per
    # channel (2 of them moving statistics); the 9x9 conv to 16 + bias.
    expected = 256 * 144 + 4 * 64 + 4 * 64 + 9 * 9 * 16 + 16
    assert layer.count_params() == expected == 38_688
    module = lambda_layer.LambdaLayer(256)
    timm_count = sum(p.numel() for p in module.parameters())
    timm_count += sum(b.numel() for n, b in module.named_buffers() if "running" in n)
    assert layer.count_params() == timm_count


def test_global_mode_fixes_the_size():
    layer = LambdaLayer(num_heads=2, key_dim=4, context_size=None, feature_size=(4, 6))
    with pytest.raises(ValueError, match=r"feature_size=\(4, 6\)"):
        layer(images((1, 4, 5, 8)))
    assert tuple(layer(images((1, 4, 6, 8))).shape) == (1, 4, 6, 8)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"context_size": 4},
        {"context_size": None},
        {"context_size": 3, "feature_size": 4},
        {"context_size": None, "feature_size": (4, -1)},
    ],
)
def test_bad_context_arguments_raise(kwargs):
    name = "feature_size" if "feature_size" in kwargs or kwargs["context_size"] is None else None
    with pytest.raises(ValueError, match=f"`{name or 'context_size'}`"):
        LambdaLayer(**kwargs)


def test_mixed_float16_keys_softmax_in_float32():
    # Key logits in the tens to hundreds: exp() overflows float16 above ~11, so
    # the softmax over positions must run in float32.
    x = images((2, 4, 4, 16), scale=50.0, seed=3)
    layer = randomized(x.shape, num_heads=2, key_dim=4, context_size=3, dtype="mixed_float16")
    outputs, attention = layer(x, return_attention=True)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
    keys = to_numpy(attention["keys"])
    assert np.abs(to_numpy(layer.qkv(x))[..., 8:12]).max() > 20.0
    assert np.isfinite(keys).all()
    np.testing.assert_allclose(keys.sum(axis=1), 1.0, atol=1e-2)
