import numpy as np
import pytest
import torch
from helpers import randomize_weights
from helpers import to_numpy
from timm_import import import_timm

from keras_attention.layers import GlobalContext


def _random_input(channels=8, seed=0):
    return np.random.default_rng(seed).normal(size=(2, 5, 7, channels)).astype("float32")


def test_identity_at_initialisation():
    # The paper zero-initialises the transform's last layer: x + 0.
    x = _random_input()
    np.testing.assert_array_equal(to_numpy(GlobalContext(reduction=2)(x)), x)


def test_parameter_count():
    # conv_attn C + 1; transform C*C/r + C/r, LayerNorm 2C/r, C/r*C + C. C=256, r=8.
    layer = GlobalContext(reduction=8)
    layer.build((None, 7, 7, 256))
    assert layer.count_params() == 257 + (256 * 32 + 32) + 64 + (32 * 256 + 256)


def test_matches_numpy_reference():
    layer = GlobalContext(units=3, fusion="mul_add")
    x = _random_input()
    layer(x)
    randomize_weights(layer)
    wa, ba, m1, mb1, mg, mbeta, m2, mb2, a1, ab1, ag, abeta, a2, ab2 = layer.get_weights()
    scores = x @ wa[:, 0] + ba[0]  # (B, H, W)
    weights = np.exp(scores - scores.max(axis=(1, 2), keepdims=True))
    weights /= weights.sum(axis=(1, 2), keepdims=True)
    context = (x * weights[..., None]).sum(axis=(1, 2))

    def transform(w1, b1, gamma, beta, w2, b2):
        h = context @ w1 + b1
        h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
        return np.maximum(h * gamma + beta, 0) @ w2 + b2

    gate = 1 / (1 + np.exp(-transform(m1, mb1, mg, mbeta, m2, mb2)))
    expected = x * gate[:, None, None] + transform(a1, ab1, ag, abeta, a2, ab2)[:, None, None]
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(attention["pooling"]), weights, rtol=1e-5, atol=1e-7)
    # The softmax runs over all positions: each image's weights sum to one.
    np.testing.assert_allclose(to_numpy(attention["pooling"]).sum(axis=(1, 2)), 1, rtol=1e-5)


def test_average_pooling_uses_the_mean():
    layer = GlobalContext(units=2, fusion="mul", pooling="avg")
    x = _random_input()
    layer(x)
    randomize_weights(layer)
    _, attention = layer(x, return_attention=True)
    assert set(attention) == {"mul"}


@pytest.mark.parametrize(
    "fusion, fuse_add, fuse_scale",
    [("add", True, False), ("mul", False, True), ("mul_add", True, True)],
)
def test_matches_timm_global_context(fusion, fuse_add, fuse_scale):
    import_timm()
    from timm.layers.global_context import GlobalContext as TimmGlobalContext

    channels = 32
    reference = TimmGlobalContext(channels, fuse_add=fuse_add, fuse_scale=fuse_scale).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in reference.parameters():
            param.copy_(torch.rand(param.shape, generator=generator) - 0.5)
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    layer = GlobalContext(fusion=fusion, epsilon=1e-6)
    layer.build((None, 5, 7, channels))
    weights = [state["conv_attn.weight"][:, :, 0, 0].T, state["conv_attn.bias"]]
    for ours, theirs in (("mul", "mlp_scale"), ("add", "mlp_add")):
        if ours in layer.transforms:
            weights += [
                state[f"{theirs}.fc1.weight"][:, :, 0, 0].T,
                state[f"{theirs}.fc1.bias"],
                state[f"{theirs}.norm.weight"],
                state[f"{theirs}.norm.bias"],
                state[f"{theirs}.fc2.weight"][:, :, 0, 0].T,
                state[f"{theirs}.fc2.bias"],
            ]
    layer.set_weights(weights)
    x = np.random.default_rng(1).normal(size=(2, channels, 5, 7)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    outputs = to_numpy(layer(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"fusion": "sum"}, "fusion"),
        ({"pooling": "max"}, "pooling"),
        ({"epsilon": 0}, "epsilon"),
        ({"units": 0}, "units"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GlobalContext(**kwargs)


@pytest.mark.parametrize(
    "fusion, fuse_add, fuse_scale",
    [("add", True, False), ("mul", False, True), ("mul_add", True, True)],
)
def test_volume_matches_timm_3d_global_context(fusion, fuse_add, fuse_scale):
    """5-D clips: timm-3d's GlobalContext (softmax over all D*H*W positions), weights copied."""
    timm_3d = import_timm("timm_3d")
    channels = 16
    reference = timm_3d.layers.GlobalContext(
        channels, fuse_add=fuse_add, fuse_scale=fuse_scale
    ).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in reference.parameters():
            param.copy_(torch.rand(param.shape, generator=generator) - 0.5)
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    layer = GlobalContext(fusion=fusion, epsilon=1e-6)
    layer.build((None, 3, 5, 4, channels))
    weights = [state["conv_attn.weight"][:, :, 0, 0, 0].T, state["conv_attn.bias"]]
    for ours, theirs in (("mul", "mlp_scale"), ("add", "mlp_add")):
        if ours in layer.transforms:
            weights += [
                state[f"{theirs}.fc1.weight"][:, :, 0, 0, 0].T,
                state[f"{theirs}.fc1.bias"],
                state[f"{theirs}.norm.weight"],
                state[f"{theirs}.norm.bias"],
                state[f"{theirs}.fc2.weight"][:, :, 0, 0, 0].T,
                state[f"{theirs}.fc2.bias"],
            ]
    layer.set_weights(weights)
    # Scores spread wide enough that the softmax is far from uniform.
    x = np.random.default_rng(2).normal(size=(2, channels, 3, 5, 4)).astype("float32") * 3.0
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    outputs, attention = layer(x.transpose(0, 2, 3, 4, 1), return_attention=True)
    outputs = to_numpy(outputs).transpose(0, 4, 1, 2, 3)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    pooling = to_numpy(attention["pooling"])
    assert pooling.shape == (2, 3, 5, 4)
    np.testing.assert_allclose(pooling.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)


def test_volume_channels_first_pooling_is_per_position():
    """channels_first clips give the channels_last layer's output and (batch, D, H, W) weights."""
    x = np.random.default_rng(3).normal(size=(2, 3, 4, 5, 8)).astype("float32")
    last = GlobalContext(fusion="mul_add", data_format="channels_last")
    first = GlobalContext(fusion="mul_add", data_format="channels_first")
    last(x)
    first(np.moveaxis(x, -1, 1))
    randomize_weights(last)
    first.set_weights(last.get_weights())
    y_last, a_last = last(x, return_attention=True)
    y_first, a_first = first(np.moveaxis(x, -1, 1), return_attention=True)
    np.testing.assert_allclose(
        np.moveaxis(to_numpy(y_first), 1, -1), to_numpy(y_last), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        to_numpy(a_first["pooling"]), to_numpy(a_last["pooling"]), rtol=1e-5, atol=1e-7
    )
