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
