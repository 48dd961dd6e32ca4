"""CoordinateAttention: timm's CoordAttn (the authors' layout, biases on) with the same weights."""

import numpy as np
import pytest
import torch
from helpers import randomize_weights
from helpers import to_numpy
from timm_import import import_timm

from keras_attention.layers import CoordinateAttention


def random_input(shape=(2, 5, 7, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_parameter_count_for_256_channels():
    layer = CoordinateAttention()
    layer.build((None, 14, 14, 256))
    units = max(8, 256 // 32)
    convs = (256 * units + units) + 2 * (units * 256 + 256)
    assert layer.count_params() == convs + 4 * units == 6696
    assert sum(int(np.prod(w.shape)) for w in layer.trainable_weights) == 6680


def test_matches_timm():
    import_timm()
    from timm.layers.coord_attn import CoordAttn

    layer = CoordinateAttention(reduction=4)
    x = random_input()
    layer(x)
    randomize_weights(layer)
    module = CoordAttn(16, rd_channels=8, bias=True).eval()
    weights = [to_numpy(w) for w in layer.weights]
    for conv, kernel, bias in (
        (module.conv1, weights[0], weights[1]),
        (module.conv_h, weights[6], weights[7]),
        (module.conv_w, weights[8], weights[9]),
    ):
        conv.weight.data = torch.tensor(kernel.T[:, :, None, None])
        conv.bias.data = torch.tensor(bias)
    for name, value in zip(("weight", "bias", "running_mean", "running_var"), weights[2:6]):
        getattr(module.bn1, name).data = torch.tensor(value)
    expected = module(torch.tensor(x.transpose(0, 3, 1, 2))).detach().numpy()
    np.testing.assert_allclose(
        to_numpy(layer(x)), expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6
    )


def coordinate_volume_reference(x, layer):
    """Coordinate attention over three pooled axes in NumPy, from the layer's weights (inference).

    `x` is (b, d, h, w, c): D strips (mean over H, W), H strips (over D, W) and
    W strips (over D, H), one shared 1x1 conv + BN + h-swish, then one 1x1 conv
    and sigmoid per axis.
    """
    weights = {w.path.split("/", 1)[1]: to_numpy(w).astype(np.float64) for w in layer.weights}

    def dense(t, name):
        return t @ weights[f"{name}/kernel"] + weights[f"{name}/bias"]

    def sigmoid(t):
        return 1 / (1 + np.exp(-t))

    x = x.astype(np.float64)
    strips = [x.mean(axis=(2, 3)), x.mean(axis=(1, 3)), x.mean(axis=(1, 2))]
    gates = []
    for strip, name in zip(strips, ("conv_d", "conv_h", "conv_w")):
        t = dense(strip, "conv")
        t = (t - weights["norm/moving_mean"]) / np.sqrt(weights["norm/moving_variance"] + 1e-5)
        t = t * weights["norm/gamma"] + weights["norm/beta"]
        t = t * np.clip(t + 3, 0, 6) / 6  # h-swish
        gates.append(sigmoid(dense(t, name)))
    gate_d, gate_h, gate_w = gates
    gate_d = gate_d[:, :, None, None]
    gate_h = gate_h[:, None, :, None]
    gate_w = gate_w[:, None, None, :]
    return x * gate_d * gate_h * gate_w, {"depth": gate_d, "height": gate_h, "width": gate_w}


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_matches_numpy_reference_with_three_gates(data_format):
    layer = CoordinateAttention(reduction=4, data_format=data_format)
    x = random_input((2, 3, 5, 4, 16), seed=2)
    fed = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(fed)
    randomize_weights(layer)
    assert [w.path.split("/", 1)[1] for w in layer.weights][-2:] == ["conv_d/kernel", "conv_d/bias"]
    outputs, attention = layer(fed, return_attention=True)
    expected, expected_gates = coordinate_volume_reference(x, layer)
    outputs = to_numpy(outputs)
    if data_format == "channels_first":
        outputs = np.moveaxis(outputs, 1, -1)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    for name, gate in expected_gates.items():
        actual = to_numpy(attention[name])
        if data_format == "channels_first":
            actual = np.moveaxis(actual, 1, -1)
        np.testing.assert_allclose(actual, gate, rtol=1e-5, atol=1e-6)
    assert to_numpy(attention["depth"]).shape == (
        (2, 3, 1, 1, 16) if data_format == "channels_last" else (2, 16, 3, 1, 1)
    )


def test_volume_adds_only_the_depth_gate():
    layer = CoordinateAttention()
    layer.build((None, 4, 14, 14, 256))
    image_layer = CoordinateAttention()
    image_layer.build((None, 14, 14, 256))
    assert layer.count_params() == image_layer.count_params() + (8 * 256 + 256)


def test_gates_follow_rows_and_columns():
    layer = CoordinateAttention(reduction=4)
    x = random_input()
    layer(x)
    randomize_weights(layer)
    outputs, attention = layer(x, return_attention=True)
    gate_h, gate_w = to_numpy(attention["height"]), to_numpy(attention["width"])
    assert gate_h.shape == (2, 5, 1, 16) and gate_w.shape == (2, 1, 7, 16)
    np.testing.assert_allclose(to_numpy(outputs), x * gate_h * gate_w, rtol=1e-5, atol=1e-6)
    # In inference each strip is normalised on its own: changing column 3 moves
    # the width gate of column 3 only (every row's mean moves too).
    x2 = x.copy()
    x2[:, :, 3] += 2.0
    _, changed = layer(x2, return_attention=True)
    moved = np.abs(to_numpy(changed["width"]) - gate_w).max(axis=(0, 1, 3)) > 1e-7
    assert moved.tolist() == [i == 3 for i in range(7)]


def test_channels_first_gate_shapes():
    layer = CoordinateAttention(reduction=4, data_format="channels_first")
    _, attention = layer(random_input((2, 16, 5, 7)), return_attention=True)
    assert tuple(attention["height"].shape) == (2, 16, 5, 1)
    assert tuple(attention["width"].shape) == (2, 16, 1, 7)


@pytest.mark.parametrize(
    "kwargs, name", [({"reduction": 0}, "reduction"), ({"min_units": 0}, "min_units")]
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        CoordinateAttention(**kwargs)
