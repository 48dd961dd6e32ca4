"""GatherExcite: the paper's three variants against timm's module with the same weights."""

import numpy as np
import pytest
import torch
from helpers import randomize_weights
from helpers import to_numpy
from timm_import import import_timm

from keras_attention.layers import GatherExcite


def random_input(shape=(2, 9, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def timm_gather_excite(layer, channels):
    """timm's GatherExcite holding `layer`'s weights, in eval mode.

    timm 1.0.31 cannot construct the module with `use_mlp=True` or
    `extra_params=True` (it passes its device/dtype dict positionally), so the
    module is made parameter-free and timm's own gather and MLP blocks are
    attached; its forward pass is untouched.
    """
    import_timm()
    from timm.layers.create_conv2d import create_conv2d
    from timm.layers.gather_excite import GatherExcite as TimmGatherExcite
    from timm.layers.mlp import ConvMlp

    module = TimmGatherExcite(channels, extent=layer.extent, use_mlp=False)
    if layer.extra_params:
        gather = torch.nn.Sequential()
        for i, (conv, norm) in enumerate(zip(layer.gather_convs, layer.gather_norms)):
            if i:
                gather.add_module(f"act{i}", torch.nn.ReLU())
            tconv = create_conv2d(channels, channels, kernel_size=3, stride=2, depthwise=True)
            tconv.weight.data = torch.tensor(to_numpy(conv.kernel).transpose(2, 3, 0, 1))
            tnorm = torch.nn.BatchNorm2d(channels)
            for name, value in zip(("weight", "bias", "running_mean", "running_var"), norm.weights):
                getattr(tnorm, name).data = torch.tensor(to_numpy(value))
            gather.add_module(f"conv{i + 1}", tconv)
            gather.add_module(f"norm{i + 1}", tnorm)
        module.gather = gather
    if layer.use_mlp:
        mlp = ConvMlp(channels, layer.reduce.units)
        for conv, dense in ((mlp.fc1, layer.reduce), (mlp.fc2, layer.expand)):
            conv.weight.data = torch.tensor(to_numpy(dense.kernel).T[:, :, None, None])
            conv.bias.data = torch.tensor(to_numpy(dense.bias))
        module.mlp = mlp
    return module.eval()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"extent": 0},  # timm's default: global extent with the MLP (SE)
        {"extent": 2, "use_mlp": False},  # GE-θ⁻
        {"extent": 4, "use_mlp": False},
        {"extent": 8, "use_mlp": False},
        {"extent": 2, "use_mlp": True},
        {"extent": 4, "extra_params": True, "use_mlp": False},  # GE-θ
        {"extent": 4, "extra_params": True, "use_mlp": True},  # GE-θ⁺
        {"extent": 8, "extra_params": True, "use_mlp": True},
    ],
)
def test_matches_timm(kwargs):
    layer = GatherExcite(reduction=4, **kwargs)
    x = random_input()
    layer(x)
    randomize_weights(layer)
    expected = timm_gather_excite(layer, 16)(torch.tensor(x.transpose(0, 3, 1, 2))).detach()
    actual = to_numpy(layer(x))
    np.testing.assert_allclose(actual, expected.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)


def test_parameter_free_variant_is_average_pool_then_nearest_upsampling():
    layer = GatherExcite(extent=2, use_mlp=False)
    x = random_input((1, 4, 4, 3))
    _, gate = layer(x, return_attention=True)
    assert layer.count_params() == 0
    # Window 3, stride 2, padding 1 not counted: cell (0, 0) averages rows/cols 0..1.
    gathered = np.empty((1, 2, 2, 3))
    for i in range(2):
        for j in range(2):
            rows = slice(max(2 * i - 1, 0), 2 * i + 2)
            columns = slice(max(2 * j - 1, 0), 2 * j + 2)
            gathered[0, i, j] = x[0, rows, columns].mean(axis=(0, 1))
    expected = 1 / (1 + np.exp(-gathered.repeat(2, axis=1).repeat(2, axis=2)))
    np.testing.assert_allclose(to_numpy(gate), expected, rtol=1e-5, atol=1e-6)


def test_parameter_counts_for_256_channels():
    def count(**kwargs):
        layer = GatherExcite(**kwargs)
        layer.build((None, 16, 16, 256))
        return layer.count_params()

    assert count(extent=8, use_mlp=False) == 0  # GE-θ⁻
    # GE-θ, extent 4: two depthwise 3x3 convs and their BatchNormalization.
    assert count(extent=4, extra_params=True, use_mlp=False) == 2 * 9 * 256 + 2 * 4 * 256
    # GE-θ⁺ adds SE's MLP (8,464 at r=16).
    assert count(extent=4, extra_params=True) == 6656 + 8464


def test_global_gate_is_one_vector_per_image():
    layer = GatherExcite(extent=0, data_format="channels_first")
    _, gate = layer(random_input((2, 16, 5, 6)), return_attention=True)
    assert tuple(gate.shape) == (2, 16, 1, 1)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"extent": 3}, "extent"),
        ({"extent": 6}, "extent"),
        ({"extent": 1}, "extent"),
        ({"extent": -2}, "extent"),
        ({"extent": 0, "extra_params": True}, "extra_params"),
        ({"use_mlp": "yes"}, "use_mlp"),
        ({"reduction": 0}, "reduction"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        GatherExcite(**kwargs)


def _np(variable):
    return np.asarray(to_numpy(variable), "float64")


def _pool_window(o, extent, n):
    """The input rows that output cell `o` averages: window 2e - 1, stride e, padding e - 1
    not counted."""
    start = o * extent - (extent - 1)
    return slice(max(start, 0), min(start + 2 * extent - 1, n))


def _numpy_depthwise_stride2(x, kernel):
    """channels-last (B, D, H, W, C) * (3, 3, 3, C, 1), stride 2 in every axis, padding 1."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0)))
    out = [-(-n // 2) for n in x.shape[1:4]]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for a in range(3):
        for b in range(3):
            for c in range(3):
                window = padded[
                    :, a : a + 2 * out[0] : 2, b : b + 2 * out[1] : 2, c : c + 2 * out[2] : 2
                ]
                y += window * kernel[a, b, c, :, 0]
    return y


def _numpy_batch_norm(x, norm):
    gamma, beta = _np(norm.gamma), _np(norm.beta)
    mean, variance = _np(norm.moving_mean), _np(norm.moving_variance)
    return (x - mean) / np.sqrt(variance + 1e-5) * gamma + beta


def gather_excite_volume_numpy(layer, x):
    """The layer's gate on a channels-last clip, in NumPy float64, from its own weights."""
    x = x.astype("float64")
    if layer.extent == 0:
        gathered = x.mean(axis=(1, 2, 3), keepdims=True)
    elif layer.extra_params:
        gathered = x
        for i, (conv, norm) in enumerate(zip(layer.gather_convs, layer.gather_norms)):
            if i:
                gathered = np.maximum(gathered, 0)
            gathered = _numpy_batch_norm(_numpy_depthwise_stride2(gathered, _np(conv.kernel)), norm)
    else:
        e = layer.extent
        out = [-(-n // e) for n in x.shape[1:4]]
        gathered = np.empty((x.shape[0], *out, x.shape[-1]))
        for i in range(out[0]):
            for j in range(out[1]):
                for k in range(out[2]):
                    cube = x[
                        :,
                        _pool_window(i, e, x.shape[1]),
                        _pool_window(j, e, x.shape[2]),
                        _pool_window(k, e, x.shape[3]),
                    ]
                    gathered[:, i, j, k] = cube.mean(axis=(1, 2, 3))
    if layer.use_mlp:
        hidden = np.maximum(gathered @ _np(layer.reduce.kernel) + _np(layer.reduce.bias), 0)
        gathered = hidden @ _np(layer.expand.kernel) + _np(layer.expand.bias)
    gate = 1 / (1 + np.exp(-gathered))
    if layer.extent:
        for axis in (1, 2, 3):
            small, large = gate.shape[axis], x.shape[axis]
            gate = np.take(gate, np.arange(large) * small // large, axis=axis)
    return gate


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"extent": 2, "use_mlp": False},
        {"extent": 4, "reduction": 4},
        {"extent": 2, "extra_params": True, "reduction": 4},
        {"extent": 4, "extra_params": True, "use_mlp": False},
    ],
)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_matches_numpy_reference(kwargs, data_format):
    """Clips gather over depth too (timm-3d's GatherExcite is still 2-D inside): pooling
    cubes, 3x3x3 stride-2 depthwise steps and nearest upsampling in all three axes."""
    layer = GatherExcite(data_format=data_format, **kwargs)
    # Odd, different depth, height and width: the padding and ceil sizes matter on every axis.
    x = random_input((2, 5, 7, 6, 16), seed=3)
    ours_x = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(ours_x)
    randomize_weights(layer)
    expected_gate = gather_excite_volume_numpy(layer, x)
    outputs, gate = layer(ours_x, return_attention=True)
    outputs, gate = to_numpy(outputs), to_numpy(gate)
    if data_format == "channels_first":
        outputs, gate = np.moveaxis(outputs, 1, -1), np.moveaxis(gate, 1, -1)
    np.testing.assert_allclose(gate, expected_gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs, x * expected_gate, rtol=1e-5, atol=1e-5)
    if layer.extent:
        # The gate varies along depth: the gather is local in depth, not a mean over frames.
        assert np.abs(np.diff(expected_gate, axis=1)).max() > 1e-3


def test_volume_gather_conv_kernels_are_3x3x3():
    layer = GatherExcite(extent=4, extra_params=True)
    layer.build((None, 8, 8, 8, 32))
    assert [tuple(c.kernel.shape) for c in layer.gather_convs] == [(3, 3, 3, 32, 1)] * 2
    assert [w.path.split("/", 1)[1] for w in layer.weights][:1] == ["gather_conv1/kernel"]
