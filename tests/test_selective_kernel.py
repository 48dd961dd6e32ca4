import numpy as np
import pytest
from helpers import batch_norm_numpy
from helpers import float64
from helpers import grouped_conv3d_numpy
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import SelectiveKernel


def built(channels=32, **kwargs):
    layer = SelectiveKernel(**{"groups": 8, "min_units": 8, **kwargs})
    x = np.random.default_rng(0).normal(size=(2, 6, 5, channels)).astype("float32")
    layer(x)
    randomize_weights(layer)
    return layer, x


def test_softmax_is_across_branches_not_channels():
    layer, x = built()
    _, weights = layer(x, return_attention=True)
    weights = to_numpy(weights)
    assert weights.shape == (2, 2, 32)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(weights.sum(axis=2), 1.0)


def test_output_is_the_weighted_sum_of_the_branches():
    layer, x = built(dilations=(1, 2, 3))
    outputs, weights = layer(x, return_attention=True)
    branches = [
        np.maximum(to_numpy(norm(conv(x), training=False)), 0)
        for conv, norm in zip(layer.branch_convs, layer.branch_norms)
    ]
    weights = to_numpy(weights)
    expected = sum(weights[:, m, None, None, :] * b for m, b in enumerate(branches))
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)


def test_branch_convolutions_are_grouped_dilated_and_bias_free():
    layer, _ = built(channels=32, groups=8, dilations=(1, 2))
    for conv, rate in zip(layer.branch_convs, (1, 2)):
        assert tuple(conv.kernel.shape) == (3, 3, 32 // 8, 32)
        assert conv.dilation_rate == (rate, rate)
        assert not conv.use_bias


def test_fuse_width_is_max_of_reduced_channels_and_floor():
    layer = SelectiveKernel(groups=32)  # paper defaults: r=16, L=32
    layer.build((None, 8, 8, 256))
    assert layer.fuse_dense.units == 32
    layer = SelectiveKernel(groups=32)
    layer.build((None, 8, 8, 1024))
    assert layer.fuse_dense.units == 64


def test_select_and_fuse_have_no_bias():
    layer, _ = built()
    assert not layer.select.use_bias and not layer.fuse_dense.use_bias
    # Paper defaults at C=256: 2 x (3*3*8*256 + 2*256) + 256*32 + 2*32 + 32*512.
    layer = SelectiveKernel(groups=32)
    layer.build((None, 8, 8, 256))
    assert sum(int(np.prod(w.shape)) for w in layer.trainable_weights) == 62528


def test_units_override_the_fuse_width():
    layer = SelectiveKernel(groups=8, units=24)
    layer.build((None, 8, 8, 256))
    assert layer.fuse_dense.units == 24
    assert SelectiveKernel.from_config(layer.get_config()).units == 24


def test_split_input_gives_each_branch_its_share_of_channels():
    layer, x = built(channels=32, groups=4, split_input=True)
    for conv in layer.branch_convs:
        assert tuple(conv.kernel.shape) == (3, 3, 16 // 4, 32)
    outputs, weights = layer(x, return_attention=True)
    halves = np.split(x, 2, axis=-1)
    branches = [
        np.maximum(to_numpy(norm(conv(half), training=False)), 0)
        for conv, norm, half in zip(layer.branch_convs, layer.branch_norms, halves)
    ]
    weights = to_numpy(weights)
    expected = sum(weights[:, m, None, None, :] * b for m, b in enumerate(branches))
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strides", [2, 3])
@pytest.mark.parametrize("size", [5, 6])
def test_strides_give_pytorch_output_sizes(strides, size):
    layer = SelectiveKernel(groups=4, strides=strides, dilations=(1, 2, 3))
    y = layer(np.zeros((1, size, size + 1, 16), "float32"))
    # PyTorch: floor((H + 2p - d(k-1) - 1) / s) + 1 with p = ((s-1) + d(k-1)) // 2.
    expected = [(n + 2 * ((strides - 1) // 2) - 1) // strides + 1 for n in (size, size + 1)]
    assert tuple(y.shape) == (1, *expected, 16)
    assert layer.compute_output_shape((1, size, size + 1, 16)) == tuple(y.shape)


@pytest.mark.parametrize("split_input", [False, True])
def test_channels_first_matches_channels_last_with_split_and_strides(split_input):
    # The branches run channels_last inside: TensorFlow without oneDNN (this
    # CPU) has no NCHW convolution.
    last, x = built(channels=32, groups=4, strides=2, split_input=split_input)
    first = SelectiveKernel(
        groups=4, min_units=8, strides=2, split_input=split_input, data_format="channels_first"
    )
    first(np.transpose(x, (0, 3, 1, 2)))
    first.set_weights(last.get_weights())
    expected = to_numpy(last(x))
    actual = to_numpy(first(np.transpose(x, (0, 3, 1, 2))))
    np.testing.assert_allclose(np.transpose(actual, (0, 2, 3, 1)), expected, rtol=1e-5, atol=1e-6)


def test_filters_change_the_output_channels():
    layer = SelectiveKernel(filters=16, groups=8, min_units=8)
    y = layer(np.zeros((1, 5, 7, 32), "float32"))
    assert tuple(y.shape) == (1, 5, 7, 16)
    assert layer.compute_output_shape((1, 5, 7, 32)) == (1, 5, 7, 16)


def test_groups_that_do_not_divide_the_channels_raise_at_build():
    with pytest.raises(ValueError, match="`groups`.*24 channels"):
        SelectiveKernel(groups=32).build((None, 8, 8, 24))
    with pytest.raises(ValueError, match="`groups`"):
        SelectiveKernel(filters=48, groups=32)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"dilations": (1,)}, "dilations"),
        ({"dilations": (1, 0)}, "dilations"),
        ({"dilations": 2}, "dilations"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"reduction": -1}, "reduction"),
        ({"min_units": 0}, "min_units"),
        ({"units": 0}, "units"),
        ({"strides": 0}, "strides"),
        ({"strides": 2, "kernel_size": 4}, "kernel_size"),
        ({"split_input": "yes"}, "split_input"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        SelectiveKernel(**kwargs)


def test_split_input_needs_channels_the_branches_divide():
    with pytest.raises(ValueError, match="`split_input=True`.*15 channels"):
        SelectiveKernel(groups=1, split_input=True).build((None, 8, 8, 15))
    with pytest.raises(ValueError, match="`groups`.*8 per branch"):
        SelectiveKernel(groups=16, split_input=True).build((None, 8, 8, 16))


def selective_kernel_volume_numpy(layer, x):
    """SK on a channels-last clip in NumPy float64 (eval mode), from the layer's own weights."""
    x = x.astype("float64")
    count = len(layer.dilations)
    inputs = np.split(x, count, axis=-1) if layer.split_input else [x] * count
    k, s = layer.kernel_size, layer.strides
    branches = []
    for conv, norm, branch_input, rate in zip(
        layer.branch_convs, layer.branch_norms, inputs, layer.dilations
    ):
        # "same" at stride 1 (odd kernels: symmetric); PyTorch's padding above it.
        padding = rate * (k - 1) // 2 if s == 1 else ((s - 1) + rate * (k - 1)) // 2
        y = grouped_conv3d_numpy(branch_input, float64(conv.kernel), layer.groups, s, rate, padding)
        branches.append(np.maximum(batch_norm_numpy(y, norm), 0))
    pooled = sum(branches).mean(axis=(1, 2, 3))
    z = np.maximum(batch_norm_numpy(pooled @ float64(layer.fuse_dense.kernel), layer.fuse_bn), 0)
    logits = (z @ float64(layer.select.kernel)).reshape(x.shape[0], count, -1)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    outputs = sum(b * weights[:, i, None, None, None, :] for i, b in enumerate(branches))
    return outputs, weights


@pytest.mark.parametrize(
    "kwargs",
    [
        {"groups": 4, "min_units": 8},
        {"groups": 2, "units": 8, "split_input": True, "strides": 2, "filters": 8},
        {"groups": 4, "units": 8, "dilations": (1, 2, 3), "strides": 2},
    ],
)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_volume_matches_numpy_reference(kwargs, data_format):
    """Clips: grouped 3x3x3 branches dilated in all three axes, strided in all three, the
    fuse step pooled over D*H*W (timm-3d's SelectiveKernel is still 2-D inside)."""
    layer = SelectiveKernel(data_format=data_format, **kwargs)
    x = np.random.default_rng(2).normal(size=(2, 5, 6, 7, 16)).astype("float32")
    ours_x = np.moveaxis(x, -1, 1) if data_format == "channels_first" else x
    layer(ours_x)
    randomize_weights(layer)
    expected, expected_weights = selective_kernel_volume_numpy(layer, x)
    outputs, weights = layer(ours_x, return_attention=True)
    outputs = to_numpy(outputs)
    if data_format == "channels_first":
        outputs = np.moveaxis(outputs, 1, -1)
    assert outputs.shape == expected.shape
    assert tuple(layer.compute_output_shape(ours_x.shape)) == tuple(layer(ours_x).shape)
    np.testing.assert_allclose(to_numpy(weights), expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)


def test_volume_branch_kernels_are_cubic_and_grouped():
    layer, _ = built(channels=32)
    volume = SelectiveKernel(groups=32)
    volume.build((None, 4, 8, 8, 32))
    assert [tuple(c.kernel.shape) for c in volume.branch_convs] == [(3, 3, 3, 1, 32)] * 2
    assert [w.path.split("/", 1)[1] for w in volume.weights] == [
        w.path.split("/", 1)[1] for w in layer.weights
    ]
