"""HaloAttention: timm's HaloAttn, a NumPy reference with explicit windows, block-size errors."""

import functools

import keras
import numpy as np
import pytest
import torch
from helpers import images
from helpers import randomized_layer
from helpers import to_numpy
from timm_import import import_timm

from keras_attention.layers import HaloAttention

halo_attn = import_timm().layers.halo_attn


randomized = functools.partial(randomized_layer, HaloAttention)


def softmax(e):
    e = np.exp(e - e.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference(layer, x):
    """Halo attention in float64, block by block and window pixel by pixel."""
    batch, height, width, channels = x.shape
    b, h, heads, d = layer.block_size, layer.halo_size, layer.num_heads, layer._key_dim
    dv, w = channels // heads, b + 2 * h
    q = x.astype("float64") @ to_numpy(layer.query.kernel)[0, 0].astype("float64")
    kv = x.astype("float64") @ to_numpy(layer.key_value.kernel)[0, 0].astype("float64")
    kv = kv.reshape(batch, height, width, heads, d + dv)  # per head: key, then value
    rows, columns = (to_numpy(t).astype("float64") for t in (layer.height_rel, layer.width_rel))
    scale = d**-0.5
    outputs = np.zeros((batch, height, width, heads, dv))
    attention = []
    for top in range(0, height, b):
        for left in range(0, width, b):
            # The window: the block grown by h on each side, zeros outside the map.
            window = np.zeros((batch, w, w, heads, d + dv))
            for wy in range(w):
                for wx in range(w):
                    y, x_ = top - h + wy, left - h + wx
                    if 0 <= y < height and 0 <= x_ < width:
                        window[:, wy, wx] = kv[:, y, x_]
            keys = window[..., :d].reshape(batch, w * w, heads, d)
            values = window[..., d:].reshape(batch, w * w, heads, dv)
            block = q[:, top : top + b, left : left + b].reshape(batch, b * b, heads, d)
            logits = np.einsum("bthd,bshd->bhts", block, keys) * scale
            for t in range(b * b):
                qy, qx = divmod(t, b)
                for s in range(w * w):
                    ky, kx = divmod(s, w)
                    embedding = rows[ky - qy + w - 1] + columns[kx - qx + w - 1]
                    relative = block[:, t] @ embedding
                    logits[:, :, t, s] += relative * (scale if layer.scale_position_logits else 1.0)
            weights = softmax(logits)
            attention.append(weights)
            attended = np.einsum("bhts,bshd->bthd", weights, values)
            outputs[:, top : top + b, left : left + b] = attended.reshape(batch, b, b, heads, dv)
    return outputs.reshape(x.shape), np.stack(attention, axis=1)


@pytest.mark.parametrize(
    "kwargs, return_attention",
    [
        ({"block_size": 2, "halo_size": 1}, False),
        ({"block_size": 3, "halo_size": 2, "scale_position_logits": True}, True),
    ],
    ids=["fused", "explicit"],
)
def test_matches_numpy_reference(kwargs, return_attention):
    x = images((2, 6, 6, 8), seed=1)
    layer = randomized(x.shape, num_heads=2, **kwargs)
    expected, expected_attention = reference(layer, x)
    outputs = layer(x, return_attention=return_attention)
    if return_attention:
        outputs, attention = outputs
        assert tuple(attention.shape) == expected_attention.shape == (2, 4, 2, 9, 49)
        np.testing.assert_allclose(to_numpy(attention), expected_attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)


def to_timm(layer, channels):
    module = halo_attn.HaloAttn(
        channels,
        num_heads=layer.num_heads,
        dim_head=layer.key_dim,
        block_size=layer.block_size,
        halo_size=layer.halo_size,
        qkv_bias=layer.use_bias,
        scale_pos_embed=layer.scale_position_logits,
        stride=layer.strides,
    ).eval()

    def kernel(conv):
        return torch.from_numpy(to_numpy(conv.kernel)[0, 0].T[..., None, None])

    with torch.no_grad():
        module.q.weight.copy_(kernel(layer.query))
        module.kv.weight.copy_(kernel(layer.key_value))
        if layer.use_bias:
            module.q.bias.copy_(torch.from_numpy(to_numpy(layer.query.bias)))
            module.kv.bias.copy_(torch.from_numpy(to_numpy(layer.key_value.bias)))
        module.pos_embed.height_rel.copy_(torch.from_numpy(to_numpy(layer.height_rel)))
        module.pos_embed.width_rel.copy_(torch.from_numpy(to_numpy(layer.width_rel)))
    return module


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((2, 8, 12, 16), {"block_size": 4, "halo_size": 2, "num_heads": 4}),
        (
            (1, 6, 4, 16),
            {
                "block_size": 2,
                "halo_size": 0,
                "num_heads": 2,
                "key_dim": 4,
                "use_bias": True,
                "scale_position_logits": True,
            },
        ),
        # Strided queries (2 divides the block), and the 2x2 pool (it does not).
        ((2, 8, 16, 16), {"block_size": 4, "halo_size": 1, "num_heads": 2, "strides": 2}),
        ((1, 6, 12, 8), {"block_size": 3, "halo_size": 1, "num_heads": 2, "strides": 2}),
    ],
)
def test_matches_timm_with_the_same_weights(shape, kwargs):
    x = images(shape, scale=2.0, seed=2)
    layer = randomized(shape, **kwargs)
    module = to_timm(layer, shape[-1])
    with torch.no_grad():
        expected = module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_parameters_at_256_channels():
    layer = HaloAttention()  # block 8, halo 3, 8 heads of 32
    layer(images((1, 8, 8, 256)))
    # q 256 x 256, kv 256 x 512, relative tables (2 * 14 - 1) x 32 twice.
    assert layer.count_params() == 256 * 256 + 256 * 512 + 2 * 27 * 32 == 198_336
    module = halo_attn.HaloAttn(256)
    assert layer.count_params() == sum(p.numel() for p in module.parameters())


def test_sizes_not_multiple_of_the_block_raise():
    with pytest.raises(ValueError, match=r"`block_size`=4.*\(6, 8\)"):
        HaloAttention(block_size=4, num_heads=2)(images((1, 6, 8, 8)))
    with pytest.raises(ValueError, match="`block_size`"):
        HaloAttention(block_size=4, num_heads=2)(keras.Input((8, 10, 8)))
    first = HaloAttention(block_size=4, num_heads=2, data_format="channels_first")
    assert tuple(first(images((1, 8, 4, 12))).shape) == (1, 8, 4, 12)


def test_strided_shapes_and_bad_strides():
    layer = HaloAttention(block_size=4, halo_size=1, num_heads=2, strides=2)
    outputs, attention = layer(keras.Input((8, 12, 8)), return_attention=True)
    eager = layer(images((2, 8, 12, 8)), return_attention=True)
    assert tuple(outputs.shape) == (None, 4, 6, 8) and tuple(eager[0].shape) == (2, 4, 6, 8)
    assert tuple(attention.shape[1:]) == tuple(eager[1].shape[1:]) == (6, 2, 4, 36)
    first = HaloAttention(block_size=4, num_heads=2, strides=2, data_format="channels_first")
    assert first.compute_output_shape((None, 8, 16, 12)) == (None, 8, 8, 6)
    with pytest.raises(ValueError, match="`strides`.*3"):
        HaloAttention(strides=3)


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="`num_heads`"):
        HaloAttention(block_size=2, num_heads=3)(images((1, 4, 4, 8)))


def test_halo_beyond_the_map_sees_zero_keys():
    # One block covering the map: the halo is all padding, whose zero keys
    # still get the relative logit, so they share the softmax with the map.
    x = images((1, 2, 2, 4), seed=4)
    layer = randomized(x.shape, block_size=2, halo_size=1, num_heads=1)
    _, attention = layer(x, return_attention=True)
    attention = to_numpy(attention)[0, 0, 0]  # (4 queries, 16 window pixels)
    inside = np.zeros((4, 4), bool)
    inside[1:3, 1:3] = True
    np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-5)
    assert (attention[:, ~inside.reshape(-1)] > 0).all()
    np.testing.assert_allclose(to_numpy(layer(x)), reference(layer, x)[0], rtol=1e-4, atol=1e-5)


def test_symbolic_attention_shape_matches_the_eager_one():
    layer = HaloAttention(block_size=2, halo_size=1, num_heads=2)
    outputs, attention = layer(keras.Input((4, 6, 8)), return_attention=True)
    eager = layer(images((2, 4, 6, 8)), return_attention=True)[1]
    assert tuple(outputs.shape) == (None, 4, 6, 8)
    assert tuple(attention.shape) == (None,) + tuple(eager.shape[1:]) == (None, 6, 2, 4, 16)
    unknown = layer(keras.Input((None, None, 8)), return_attention=True)[1]
    assert tuple(unknown.shape) == (None, None, 2, 4, 16)
