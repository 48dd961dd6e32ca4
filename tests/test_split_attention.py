import keras
import numpy as np
import pytest
import torch
from helpers import batch_norm_numpy
from helpers import float64
from helpers import grouped_conv3d_numpy
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


def split_attention_volume_numpy(layer, x):
    """ResNeSt's split attention (eval mode) on a channels-last clip, NumPy float64."""
    radix, cardinality = layer.radix, layer.cardinality
    y = grouped_conv3d_numpy(
        x.astype("float64"),
        float64(layer.conv.kernel),
        cardinality * radix,
        layer.strides,
        padding=layer.kernel_size // 2,
    )
    y = np.maximum(batch_norm_numpy(y, layer.bn0), 0)
    splits = np.split(y, radix, axis=-1)
    context = sum(splits).mean(axis=(1, 2, 3))  # (batch, filters)

    def grouped_dense(v, conv):
        kernel, bias = float64(conv.kernel)[0, 0, 0], float64(conv.bias)
        parts = np.split(v, cardinality, axis=-1)
        outs = np.split(kernel, cardinality, axis=-1)
        return np.concatenate([p @ k for p, k in zip(parts, outs)], axis=-1) + bias

    hidden = np.maximum(batch_norm_numpy(grouped_dense(context, layer.fc1), layer.bn1), 0)
    logits = grouped_dense(hidden, layer.fc2)
    filters = splits[0].shape[-1]
    if radix > 1:
        logits = logits.reshape(len(x), cardinality, radix, filters // cardinality)
        weights = np.exp(logits - logits.max(axis=2, keepdims=True))
        weights /= weights.sum(axis=2, keepdims=True)
        weights = weights.transpose(0, 2, 1, 3).reshape(len(x), radix, filters)
    else:
        weights = 1 / (1 + np.exp(-logits))[:, None, :]
    outputs = sum(s * weights[:, r, None, None, None, :] for r, s in enumerate(splits))
    return outputs, weights


@pytest.mark.parametrize(
    "kwargs",
    [
        {"radix": 2, "cardinality": 2, "min_units": 4},
        {"radix": 4, "cardinality": 1, "units": 8, "strides": 2, "filters": 8},
        {"radix": 1, "cardinality": 2, "units": 4, "kernel_size": 1},
    ],
)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_matches_numpy_reference(kwargs, data_format):
    """Clips (timm-3d's SplitAttn is still 2-D inside): a grouped k x k x k convolution
    strided in all three axes, the context over D*H*W, the radix softmax per cardinal group."""
    layer = SplitAttention(data_format=data_format, **kwargs)
    x = np.random.default_rng(4).normal(size=(2, 5, 4, 7, 16)).astype("float32")
    ours_x = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(ours_x)
    randomize_weights(layer)
    expected, expected_weights = split_attention_volume_numpy(layer, x)
    outputs, weights = layer(ours_x, return_attention=True)
    outputs = to_numpy(outputs)
    if data_format == "channels_first":
        outputs = np.moveaxis(outputs, 1, -1)
    assert tuple(layer.compute_output_shape(ours_x.shape)) == tuple(layer(ours_x).shape)
    np.testing.assert_allclose(to_numpy(weights), expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)


def test_volume_kernels_gain_a_depth_axis():
    image = SplitAttention(radix=2, cardinality=2, min_units=4)
    image.build((None, 6, 6, 16))
    volume = SplitAttention(radix=2, cardinality=2, min_units=4)
    volume.build((None, 4, 6, 6, 16))
    for a, b in zip(image.weights, volume.weights):
        assert a.path.split("/", 1)[1] == b.path.split("/", 1)[1]
        assert tuple(b.shape) in (tuple(a.shape), (a.shape[0], *a.shape))
    assert tuple(volume.conv.kernel.shape) == (3, 3, 3, 4, 32)
