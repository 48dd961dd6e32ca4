import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import SqueezeExcitation
from keras_attention.ops import spatial_mean


def test_parameter_count_matches_paper():
    # Hu et al.: 2 * C^2 / r weights plus biases; C=256, r=16 -> 8,464.
    layer = SqueezeExcitation(reduction=16)
    layer.build((None, 7, 7, 256))
    assert layer.count_params() == 256 * 16 + 16 + 16 * 256 + 256 == 8464


def test_matches_numpy_reference():
    layer = SqueezeExcitation(reduction=4)
    x = np.random.default_rng(0).normal(size=(2, 5, 3, 8)).astype("float32")
    layer(x)
    randomize_weights(layer)
    w1, b1, w2, b2 = layer.get_weights()
    squeezed = x.mean(axis=(1, 2))
    gate = 1 / (1 + np.exp(-(np.maximum(squeezed @ w1 + b1, 0) @ w2 + b2)))
    expected = x * gate[:, None, None, :]
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(attention), gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_bfloat16_squeeze_accumulates_in_float32(data_format):
    # A bfloat16 running sum of 3,136 values near 3 stalls in the hundreds (its
    # spacing there reaches 4); the squeeze must match the float32 mean.
    x = np.random.default_rng(2).normal(3.0, 1.0, size=(2, 56, 56, 4)).astype("float32")
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    x = keras.ops.cast(x, "bfloat16")
    mean = spatial_mean(x, data_format)
    assert keras.backend.standardize_dtype(mean.dtype) == "bfloat16"
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    np.testing.assert_allclose(to_numpy(mean), to_numpy(x).mean(axis=axes), rtol=1e-2)


def test_gate_is_per_channel_in_unit_interval():
    layer = SqueezeExcitation(reduction=2)
    x = np.random.default_rng(1).normal(size=(3, 4, 4, 6)).astype("float32")
    _, gate = layer(x, return_attention=True)
    gate = to_numpy(gate)
    assert gate.shape == (3, 6)
    assert ((gate > 0) & (gate < 1)).all()


def test_fewer_channels_than_reduction_keeps_one_hidden_unit():
    layer = SqueezeExcitation(reduction=16)
    layer.build((None, 4, 4, 8))
    assert layer.reduce.units == 1


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "16"])
def test_bad_reduction_raises(value):
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcitation(reduction=value)


def test_unknown_channels_raise():
    with pytest.raises(ValueError, match="channel"):
        SqueezeExcitation().build((None, 8, 8, None))


def test_units_override_reduction():
    layer = SqueezeExcitation(reduction=16, units=24)
    layer.build((None, 4, 4, 256))
    assert layer.reduce.units == 24
    assert layer.count_params() == 256 * 24 + 24 + 24 * 256 + 256


def test_activation_and_hard_sigmoid_gate_match_numpy():
    layer = SqueezeExcitation(units=3, activation="relu6", gate="hard_sigmoid")
    x = np.random.default_rng(3).normal(size=(2, 4, 5, 8)).astype("float32")
    layer(x)
    randomize_weights(layer)
    w1, b1, w2, b2 = layer.get_weights()
    hidden = np.clip(x.mean(axis=(1, 2)) @ w1 + b1, 0, 6)
    gate = np.clip((hidden @ w2 + b2 + 3) / 6, 0, 1)
    _, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(attention), gate, rtol=1e-5, atol=1e-6)


def test_matches_timm_se_module():
    import torch
    from timm_import import import_timm

    import_timm()
    from timm.layers.squeeze_excite import SEModule

    channels = 48  # timm's width: make_divisible(48 / 16, 8) = 8
    reference = SEModule(channels, gate_layer="hard_sigmoid").eval()
    layer = SqueezeExcitation(units=reference.fc1.out_channels, gate="hard_sigmoid")
    layer.build((None, 5, 5, channels))
    with torch.no_grad():
        for module in (reference.fc1, reference.fc2):
            module.bias.normal_()
    layer.set_weights(
        [
            reference.fc1.weight[:, :, 0, 0].T.detach().numpy(),
            reference.fc1.bias.detach().numpy(),
            reference.fc2.weight[:, :, 0, 0].T.detach().numpy(),
            reference.fc2.bias.detach().numpy(),
        ]
    )
    x = np.random.default_rng(4).normal(size=(2, channels, 5, 5)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    outputs = to_numpy(layer(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)


def test_config_round_trip_keeps_new_arguments():
    layer = SqueezeExcitation(units=5, activation="swish", gate="hard_sigmoid")
    config = SqueezeExcitation.from_config(layer.get_config()).get_config()
    assert (config["units"], config["activation"], config["gate"]) == (5, "swish", "hard_sigmoid")


@pytest.mark.parametrize(
    "kwargs, name",
    [({"units": 0}, "units"), ({"activation": "nope"}, "activation"), ({"gate": "tanh"}, "gate")],
)
def test_bad_new_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SqueezeExcitation(**kwargs)


def _volume(channels, seed=6):
    """An NCDHW clip with depth, height and width all different."""
    return np.random.default_rng(seed).normal(size=(2, channels, 3, 5, 4)).astype("float32")


def test_volume_matches_monai_channel_se_layer():
    """MONAI's ChannelSELayer(spatial_dims=3): mean over D, H, W, Linear-ReLU-Linear-sigmoid."""
    import torch
    from monai.networks.blocks import ChannelSELayer

    channels = 32
    reference = ChannelSELayer(spatial_dims=3, in_channels=channels, r=4).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.normal_(0.0, 0.5)
    fc1, fc2 = reference.fc[0], reference.fc[2]
    layer = SqueezeExcitation(reduction=4)
    layer.build((None, 3, 5, 4, channels))
    layer.set_weights(
        [
            fc1.weight.T.detach().numpy(),
            fc1.bias.detach().numpy(),
            fc2.weight.T.detach().numpy(),
            fc2.bias.detach().numpy(),
        ]
    )
    x = _volume(channels)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    outputs = to_numpy(layer(x.transpose(0, 2, 3, 4, 1))).transpose(0, 4, 1, 2, 3)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    # channels_first clips take the NCDHW tensor as it is.
    first = SqueezeExcitation(reduction=4, data_format="channels_first")
    first.build((None, channels, 3, 5, 4))
    first.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(first(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gate", ["sigmoid", "hard_sigmoid"])
def test_volume_matches_timm_3d_se_module(gate):
    """timm-3d's SEModule (1x1x1 Conv3d fc1/fc2), weights copied."""
    import torch
    from timm_import import import_timm

    timm_3d = import_timm("timm_3d")
    channels = 48  # make_divisible(48 / 16, 8) = 8 hidden units
    reference = timm_3d.layers.squeeze_excite.SEModule(channels, gate_layer=gate).eval()
    with torch.no_grad():
        for module in (reference.fc1, reference.fc2):
            module.bias.normal_()
    layer = SqueezeExcitation(units=reference.fc1.out_channels, gate=gate)
    layer.build((None, 3, 5, 4, channels))
    layer.set_weights(
        [
            reference.fc1.weight[:, :, 0, 0, 0].T.detach().numpy(),
            reference.fc1.bias.detach().numpy(),
            reference.fc2.weight[:, :, 0, 0, 0].T.detach().numpy(),
            reference.fc2.bias.detach().numpy(),
        ]
    )
    x = _volume(channels, seed=7) * 2.0
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    outputs = to_numpy(layer(x.transpose(0, 2, 3, 4, 1))).transpose(0, 4, 1, 2, 3)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
