import keras
import numpy as np
import pytest
import torch
from helpers import randomize_weights
from helpers import to_numpy
from timm_import import import_timm

from keras_attention.layers import SplitAttention
from keras_attention.layers.channel.split_attention import split_attention_units


def test_attention_width_follows_resnest():
    # ResNeSt: C * radix / 4, at least 32 (timm rounds to a multiple of 8).
    assert split_attention_units(64, 2) == 32
    assert split_attention_units(256, 2) == 128
    assert split_attention_units(16, 2) == 32


def test_parameter_count():
    # ResNeSt-50's first block: 64 -> 64, radix 2, attention width 32.
    layer = SplitAttention(radix=2)
    layer.build((None, 8, 8, 64))
    conv = 3 * 3 * 32 * 128  # groups = radix: each sees 32 input channels
    bns = 4 * 128 + 4 * 32
    mlp = (64 * 32 + 32) + (32 * 128 + 128)
    assert layer.count_params() == conv + bns + mlp


def test_weights_sum_to_one_across_radix_and_weigh_the_splits():
    layer = SplitAttention(filters=8, radix=3, cardinality=2, min_units=4)
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 12)).astype("float32")
    layer(x)
    randomize_weights(layer)
    outputs, weights = layer(x, return_attention=True)
    weights = to_numpy(weights)
    assert weights.shape == (2, 3, 8)
    np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=1e-5)
    # NumPy reference of the weighted sum from the layer's own splits.
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    splits = to_numpy(keras.ops.relu(layer.bn0(layer.conv(padded), training=False))).reshape(
        2, 5, 6, 3, 8
    )
    expected = (splits * weights[:, None, None]).sum(axis=3)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-5, atol=1e-5)


def test_radix_one_is_a_sigmoid_gate():
    layer = SplitAttention(radix=1, min_units=4)
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 8)).astype("float32")
    _, weights = layer(x, return_attention=True)
    weights = to_numpy(weights)
    assert weights.shape == (2, 1, 8) and ((weights > 0) & (weights < 1)).all()


def test_strides_downsample():
    layer = SplitAttention(filters=16, strides=2, min_units=4)
    assert layer(np.zeros((1, 7, 8, 8), "float32")).shape == (1, 4, 4, 16)


@pytest.mark.parametrize("radix, cardinality", [(2, 1), (1, 1), (2, 2), (4, 2)])
def test_matches_timm_split_attn(radix, cardinality):
    import_timm()
    from timm.layers.split_attn import SplitAttn

    cin, cout = 32, 64
    reference = SplitAttn(
        cin, cout, radix=radix, groups=cardinality, norm_layer=torch.nn.BatchNorm2d
    ).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, value in reference.state_dict().items():
            if key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=generator) - 0.5)
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}

    def bn(prefix):
        return [state[f"{prefix}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]

    layer = SplitAttention(filters=cout, radix=radix, cardinality=cardinality)
    layer.build((None, 6, 6, cin))
    assert layer.fc1.filters == reference.fc1.out_channels
    layer.set_weights(
        [state["conv.weight"].transpose(2, 3, 1, 0), *bn("bn0")]
        + [state["fc1.weight"].transpose(2, 3, 1, 0), state["fc1.bias"], *bn("bn1")]
        + [state["fc2.weight"].transpose(2, 3, 1, 0), state["fc2.bias"]]
    )
    x = np.random.default_rng(2).normal(size=(2, cin, 6, 6)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    outputs = to_numpy(layer(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"radix": 0}, "radix"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"filters": 6, "cardinality": 4}, "cardinality"),
        ({"units": 0}, "units"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SplitAttention(**kwargs)


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match="cardinality \\* radix"):
        SplitAttention(radix=2, cardinality=2).build((None, 4, 4, 6))
