"""BottleneckSelfAttention (BoTNet): timm's BottleneckAttn, a NumPy reference, the fixed size."""

import keras
import numpy as np
import pytest
import torch
from helpers import images
from helpers import randomize_weights
from helpers import to_numpy
from timm_import import import_timm

from keras_attention.layers import BottleneckSelfAttention

bottleneck_attn = import_timm().layers.bottleneck_attn


def randomized(shape, **kwargs):
    layer = BottleneckSelfAttention(feature_size=shape[1:3], **kwargs)
    layer(images(shape))
    randomize_weights(layer)
    return layer


def softmax(e):
    e = np.exp(e - e.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference(layer, x):
    """BoT from the layer's weights in float64, pair by pair: (outputs, attention)."""
    batch, height, width, channels = x.shape
    heads, d = layer.num_heads, layer._key_dim
    dv = channels // heads
    kernel = to_numpy(layer.qkv.kernel)[0, 0].astype("float64")
    rows, columns = (to_numpy(w).astype("float64") for w in (layer.height_rel, layer.width_rel))
    qkv = x.astype("float64").reshape(batch, height * width, channels) @ kernel
    q = qkv[..., : heads * d].reshape(batch, -1, heads, d)
    k = qkv[..., heads * d : 2 * heads * d].reshape(batch, -1, heads, d)
    v = qkv[..., 2 * heads * d :].reshape(batch, -1, heads, dv)
    scale = d**-0.5
    logits = np.einsum("bthd,bshd->bhts", q, k) * scale
    positions = [(y, x_) for y in range(height) for x_ in range(width)]
    for t, (qy, qx) in enumerate(positions):
        for s, (ky, kx) in enumerate(positions):
            # Rows of the tables: the key's offset from the query, shifted.
            embedding = rows[ky - qy + height - 1] + columns[kx - qx + width - 1]
            relative = q[:, t] @ embedding  # (batch, heads)
            logits[:, :, t, s] += relative * (scale if layer.scale_position_logits else 1.0)
    attention = softmax(logits)
    outputs = np.einsum("bhts,bshd->bthd", attention, v)
    return outputs.reshape(batch, height, width, channels), attention


@pytest.mark.parametrize(
    "scale_position_logits, return_attention",
    [(False, False), (True, True)],
    ids=["fused", "explicit"],
)
def test_matches_numpy_reference(scale_position_logits, return_attention):
    x = images((2, 3, 4, 16), seed=1)
    layer = randomized(x.shape, num_heads=2, scale_position_logits=scale_position_logits)
    expected, expected_attention = reference(layer, x)
    outputs = layer(x, return_attention=return_attention)
    if return_attention:
        outputs, attention = outputs
        assert tuple(attention.shape) == (2, 2, 12, 12)
        np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)


def to_timm(layer, channels):
    height, width = layer.feature_size
    module = bottleneck_attn.BottleneckAttn(
        channels,
        feat_size=(height, width),
        num_heads=layer.num_heads,
        dim_head=layer.key_dim,
        qkv_bias=layer.use_bias,
        scale_pos_embed=layer.scale_position_logits,
    ).eval()
    with torch.no_grad():
        module.qkv.weight.copy_(
            torch.from_numpy(to_numpy(layer.qkv.kernel)[0, 0].T[..., None, None])
        )
        if layer.use_bias:
            module.qkv.bias.copy_(torch.from_numpy(to_numpy(layer.qkv.bias)))
        module.pos_embed.height_rel.copy_(torch.from_numpy(to_numpy(layer.height_rel)))
        module.pos_embed.width_rel.copy_(torch.from_numpy(to_numpy(layer.width_rel)))
    return module


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_heads": 4},
        {"num_heads": 2, "key_dim": 6, "use_bias": True, "scale_position_logits": True},
    ],
)
def test_matches_timm_with_the_same_weights(kwargs):
    x = images((2, 5, 7, 16), scale=2.0, seed=2)
    layer = randomized(x.shape, **kwargs)
    module = to_timm(layer, 16)
    with torch.no_grad():
        expected = module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_default_key_dim_is_timms():
    # timm rounds C to a multiple of 8 before splitting it over the heads.
    layer = BottleneckSelfAttention(feature_size=4, num_heads=4)
    layer(images((1, 4, 4, 20)))
    module = bottleneck_attn.BottleneckAttn(20, feat_size=4, num_heads=4)
    assert layer._key_dim == module.dim_head_qk == 6
    assert tuple(layer.qkv.kernel.shape) == (1, 1, 20, module.qkv.weight.shape[0])


def test_parameters_at_256_channels():
    layer = BottleneckSelfAttention(feature_size=14, num_heads=4)
    layer(images((1, 14, 14, 256)))
    # qkv 256 x (64*4 + 64*4 + 256), relative tables (2*14 - 1) x 64 twice.
    assert layer.count_params() == 256 * 768 + 2 * 27 * 64 == 200_064
    module = bottleneck_attn.BottleneckAttn(256, feat_size=14, num_heads=4)
    assert layer.count_params() == sum(p.numel() for p in module.parameters())


def test_other_sizes_raise_a_clear_error():
    layer = BottleneckSelfAttention(feature_size=(4, 6))
    with pytest.raises(ValueError, match=r"feature_size=\(4, 6\).*\(6, 4\)"):
        layer(images((1, 6, 4, 8)))
    layer(images((1, 4, 6, 8)))  # built at the right size, then a wrong one
    with pytest.raises(ValueError, match="feature_size"):
        layer(images((1, 4, 7, 8)))
    with pytest.raises(ValueError, match="feature_size"):
        BottleneckSelfAttention(feature_size=4)(keras.Input((5, 4, 8)))
    channels_first = BottleneckSelfAttention(feature_size=(4, 6), data_format="channels_first")
    assert tuple(channels_first(images((1, 8, 4, 6))).shape) == (1, 8, 4, 6)


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="`num_heads`"):
        BottleneckSelfAttention(feature_size=4, num_heads=3)(images((1, 4, 4, 8)))


def test_mixed_float16_large_energies_stay_finite():
    x = images((2, 4, 4, 32), scale=50.0, seed=3)
    layer = randomized(x.shape, num_heads=1, dtype="mixed_float16")
    kernel = to_numpy(layer.qkv.kernel)[0, 0].astype("float64")
    qkv = x.reshape(2, 16, 32).astype("float64") @ kernel
    energies = qkv[..., :32] @ qkv[..., 32:64].transpose(0, 2, 1)
    assert np.abs(energies).max() > np.finfo("float16").max
    fused = layer(x)
    explicit, attention = layer(x, return_attention=True)
    assert keras.backend.standardize_dtype(fused.dtype) == "float16"
    for tensor in (fused, explicit, attention):
        assert np.isfinite(to_numpy(tensor)).all()


@pytest.mark.parametrize("feature_size", [0, (4,), (4, 0), (4.0, 4), True, "4"])
def test_bad_feature_size_raises(feature_size):
    with pytest.raises(ValueError, match="`feature_size`"):
        BottleneckSelfAttention(feature_size=feature_size)


def test_config_keeps_the_size_as_a_pair():
    layer = BottleneckSelfAttention(feature_size=[3, 5])
    assert layer.get_config()["feature_size"] == (3, 5)
    assert BottleneckSelfAttention.from_config(layer.get_config()).feature_size == (3, 5)


def test_symbolic_attention_shape_matches_the_eager_one():
    layer = BottleneckSelfAttention(feature_size=(3, 4), num_heads=2)
    outputs, attention = layer(keras.Input((3, 4, 8)), return_attention=True)
    eager = layer(images((2, 3, 4, 8)), return_attention=True)[1]
    assert tuple(outputs.shape) == (None, 3, 4, 8)
    assert tuple(attention.shape) == (None,) + tuple(eager.shape[1:]) == (None, 2, 12, 12)
