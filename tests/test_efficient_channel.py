import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import EfficientChannelAttention
from keras_attention.ops import eca_kernel_size


@pytest.mark.parametrize(
    "channels, k", [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)]
)
def test_adaptive_kernel_size_matches_paper(channels, k):
    # Wang et al. 2020, eq. 12 with gamma=2, b=1 (values checked by hand).
    assert eca_kernel_size(channels) == k
    layer = EfficientChannelAttention()
    layer.build((None, 7, 7, channels))
    assert tuple(layer.conv.kernel.shape) == (k, 1, 1)
    assert layer.count_params() == k  # no bias


def test_explicit_kernel_size_overrides_the_rule():
    layer = EfficientChannelAttention(kernel_size=9)
    layer.build((None, 7, 7, 64))
    assert layer.count_params() == 9


def test_matches_numpy_reference():
    layer = EfficientChannelAttention(kernel_size=3)
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 10)).astype("float32")
    layer(x)
    randomize_weights(layer)
    kernel = layer.get_weights()[0][:, 0, 0]
    squeezed = np.pad(x.mean(axis=(1, 2)), ((0, 0), (1, 1)))  # "same" zero padding
    logits = np.stack([squeezed[:, c : c + 3] @ kernel for c in range(10)], axis=1)
    gate = 1 / (1 + np.exp(-logits))
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(attention), gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), x * gate[:, None, None, :], rtol=1e-5, atol=1e-6)


def test_gate_mixes_only_neighbouring_channels():
    layer = EfficientChannelAttention(kernel_size=3)
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 12)).astype("float32")
    _, before = layer(x, return_attention=True)
    x2 = x.copy()
    x2[..., 6] += 5.0
    _, after = layer(x2, return_attention=True)
    changed = np.flatnonzero(np.abs(to_numpy(after) - to_numpy(before))[0] > 1e-7)
    assert set(changed) <= {5, 6, 7} and 6 in changed


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": 3.0}, "kernel_size"),
        ({"gamma": 0}, "gamma"),
        ({"b": "1"}, "b"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        EfficientChannelAttention(**kwargs)


def test_circular_padding_wraps_the_channel_axis():
    layer = EfficientChannelAttention(kernel_size=3, padding="circular")
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 8)).astype("float32")
    layer(x)
    randomize_weights(layer)
    kernel = layer.get_weights()[0][:, 0, 0]
    pooled = x.mean(axis=(1, 2))
    wrapped = np.concatenate([pooled[:, -1:], pooled, pooled[:, :1]], axis=1)
    logits = np.stack([wrapped[:, c : c + 3] @ kernel for c in range(8)], axis=1)
    gate = 1 / (1 + np.exp(-logits))
    _, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(attention), gate, rtol=1e-5, atol=1e-6)
    assert layer.count_params() == 3


def test_circular_first_channel_sees_the_last():
    layer = EfficientChannelAttention(kernel_size=3, padding="circular")
    x = np.random.default_rng(3).normal(size=(1, 4, 4, 12)).astype("float32")
    _, before = layer(x, return_attention=True)
    x2 = x.copy()
    x2[..., 11] += 5.0
    _, after = layer(x2, return_attention=True)
    changed = np.flatnonzero(np.abs(to_numpy(after) - to_numpy(before))[0] > 1e-7)
    assert set(changed) == {0, 10, 11}


@pytest.mark.parametrize("channels, kernel_size", [(16, 3), (64, 5), (256, 5)])
def test_circular_matches_timm_ceca(channels, kernel_size):
    torch = pytest.importorskip("torch")
    from timm_import import import_timm

    timm = import_timm()
    reference = timm.layers.CecaModule(kernel_size=kernel_size).eval()
    layer = EfficientChannelAttention(kernel_size=kernel_size, padding="circular")
    x = np.random.default_rng(4).normal(size=(2, 5, 6, channels)).astype("float32")
    layer(x)
    randomize_weights(layer)
    # Keras Conv1D kernel (k, 1, 1) -> torch Conv1d weight (1, 1, k).
    kernel = layer.get_weights()[0][:, 0, 0]
    with torch.no_grad():
        reference.conv.weight.copy_(torch.tensor(kernel).reshape(1, 1, -1))
        expected = reference(torch.tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-6)


def test_channels_first_needs_no_nchw_convolution():
    # The 1-D conv runs on the pooled (batch, C) vector: channels_last whatever
    # the global setting (TF's CPU has no NCW conv without oneDNN).
    keras.config.set_image_data_format("channels_first")  # conftest restores it
    for padding in ("same", "circular"):
        layer = EfficientChannelAttention(kernel_size=3, padding=padding)
        x = np.random.default_rng(5).normal(size=(2, 8, 3, 4)).astype("float32")
        y = to_numpy(layer(x))
        assert layer.conv.data_format == "channels_last"
        kernel = layer.get_weights()[0][:, 0, 0]
        last = EfficientChannelAttention(
            kernel_size=3, padding=padding, data_format="channels_last"
        )
        x_last = np.transpose(x, (0, 2, 3, 1))
        last(x_last)
        last.set_weights([kernel[:, None, None]])
        np.testing.assert_allclose(
            np.transpose(y, (0, 2, 3, 1)), to_numpy(last(x_last)), rtol=1e-6, atol=1e-6
        )


def test_padding_is_validated():
    with pytest.raises(ValueError, match="`padding`"):
        EfficientChannelAttention(padding="reflect")
    with pytest.raises(ValueError, match="`padding`"):
        EfficientChannelAttention(kernel_size=9, padding="circular")(
            np.zeros((1, 2, 2, 3), "float32")
        )
    assert EfficientChannelAttention(padding="circular").get_config()["padding"] == "circular"


@pytest.mark.parametrize("padding", ["same", "circular"])
@pytest.mark.parametrize("channels_first", [False, True])
def test_volume_matches_timm_3d(padding, channels_first):
    """5-D clips: timm-3d's EcaModule (zeros) and CecaModule (circular), the same kernel."""
    torch = pytest.importorskip("torch")
    from timm_import import import_timm

    timm_3d = import_timm("timm_3d")
    module = timm_3d.layers.EcaModule if padding == "same" else timm_3d.layers.CecaModule
    reference = module(kernel_size=5).eval()
    data_format = "channels_first" if channels_first else "channels_last"
    layer = EfficientChannelAttention(kernel_size=5, padding=padding, data_format=data_format)
    # NCDHW, non-cubic: depth, height and width all differ.
    x = np.random.default_rng(3).normal(size=(2, 24, 3, 5, 4)).astype("float32") * 2.0
    ours_x = x if channels_first else x.transpose(0, 2, 3, 4, 1)
    layer(ours_x)
    randomize_weights(layer)
    kernel = layer.get_weights()[0][:, 0, 0]
    with torch.no_grad():
        reference.conv.weight.copy_(torch.tensor(kernel).reshape(1, 1, -1))
        expected = reference(torch.tensor(x)).numpy()
    outputs, gate = layer(ours_x, return_attention=True)
    outputs = to_numpy(outputs)
    if not channels_first:
        outputs = outputs.transpose(0, 4, 1, 2, 3)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    assert tuple(gate.shape) == (2, 24)


def test_volume_gate_pools_depth_too():
    """Changing one frame of a clip changes the gate: the mean runs over depth as well."""
    layer = EfficientChannelAttention(kernel_size=3)
    x = np.random.default_rng(5).normal(size=(1, 4, 3, 3, 8)).astype("float32")
    _, before = layer(x, return_attention=True)
    x2 = x.copy()
    x2[:, 3] += 1.0  # the last frame only
    _, after = layer(x2, return_attention=True)
    # Every channel's mean moved by 1/4: the numpy gate from the 3-D mean is what the layer gives.
    kernel = layer.get_weights()[0][:, 0, 0]
    pooled = np.pad(x2.mean(axis=(1, 2, 3)), ((0, 0), (1, 1)))
    logits = sum(kernel[i] * pooled[:, i : i + 8] for i in range(3))
    np.testing.assert_allclose(to_numpy(after), 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
    assert np.abs(to_numpy(after) - to_numpy(before)).max() > 1e-3
