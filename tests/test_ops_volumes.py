"""The rank-general helpers of ops.py on 5-D volumes, against independent references."""

import keras
import numpy as np
import pytest
from helpers import to_numpy

from keras_attention import ops as ka_ops
from keras_attention.layers.depthwise_conv3d import DepthwiseConv3D


def depthwise_conv3d_reference(x, kernel, dilation):
    """A "same"-padded, stride-1 depthwise 3-D convolution in NumPy loops (channels_last)."""
    taps = kernel.shape[:3]
    spans = [d * (k - 1) + 1 for k, d in zip(taps, dilation)]
    pads = [((s - 1) // 2, s - 1 - (s - 1) // 2) for s in spans]
    padded = np.pad(x, ((0, 0), *pads, (0, 0)))
    out = np.zeros(x.shape)
    depth, height, width = x.shape[1:4]
    for a in range(taps[0]):
        for b in range(taps[1]):
            for c in range(taps[2]):
                window = padded[
                    :,
                    a * dilation[0] : a * dilation[0] + depth,
                    b * dilation[1] : b * dilation[1] + height,
                    c * dilation[2] : c * dilation[2] + width,
                ]
                out += window * kernel[a, b, c, :, 0]
    return out


@pytest.mark.parametrize(
    ("kernel_size", "dilation"), [((3, 3, 3), (1, 1, 1)), ((5, 3, 1), (2, 1, 3))]
)
def test_depthwise_conv_3d_equals_the_reference(kernel_size, dilation):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 5, 7, 4)).astype("float32")
    kernel = rng.normal(size=(*kernel_size, 4, 1)).astype("float32")
    actual = to_numpy(ka_ops.depthwise_conv(x, kernel, dilation_rate=dilation))
    expected = depthwise_conv3d_reference(x, kernel, dilation)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_depthwise_conv_3d_equals_a_grouped_conv3d():
    """The depth-tap sum gives what a Conv3D with one group per channel gives."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 5, 6, 4, 3)).astype("float32")
    layer = DepthwiseConv3D(3, dilation_rate=(2, 1, 1))
    layer(x)
    kernel = rng.normal(size=(3, 3, 3, 3, 1)).astype("float32")
    layer.set_weights([kernel, np.zeros(3, "float32")])
    grouped = keras.layers.Conv3D(
        3, 3, padding="same", groups=3, use_bias=False, dilation_rate=(2, 1, 1)
    )
    grouped.build(x.shape)
    grouped.set_weights([np.transpose(kernel, (0, 1, 2, 4, 3))])
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(grouped(x)), rtol=1e-4, atol=1e-4)


def test_depthwise_conv3d_refuses_a_depth_stride():
    with pytest.raises(ValueError, match="`strides`"):
        DepthwiseConv3D(3, strides=2)
    with pytest.raises(ValueError, match="`kernel_size`"):
        DepthwiseConv3D((3, 3))


def test_resize_linear_3d_equals_torch_trilinear():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 4, 5, 6)).astype("float32")  # channels_last
    size = (5, 7, 3)
    actual = to_numpy(ka_ops.resize_linear(x, size))
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(np.moveaxis(x, -1, 1)), size=size, mode="trilinear", align_corners=False
    ).numpy()
    np.testing.assert_allclose(actual, np.moveaxis(expected, 1, -1), rtol=1e-5, atol=1e-5)


def test_resize_linear_channels_first_and_size_check():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 4, 3, 5, 2)).astype("float32")
    last = to_numpy(ka_ops.resize_linear(x, (6, 2, 5)))
    first = to_numpy(ka_ops.resize_linear(np.moveaxis(x, -1, 1), (6, 2, 5), "channels_first"))
    np.testing.assert_allclose(np.moveaxis(first, 1, -1), last, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="`size`"):
        ka_ops.resize_linear(x, (6, 2))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_layout_helpers_on_volumes(data_format):
    x = np.arange(2 * 3 * 4 * 5 * 6, dtype="float32").reshape(2, 3, 4, 5, 6)
    moved = to_numpy(ka_ops.to_channels_last(x, data_format))
    back = to_numpy(ka_ops.from_channels_last(moved, data_format))
    np.testing.assert_array_equal(back, x)
    expected_shape = x.shape if data_format == "channels_last" else (2, 4, 5, 6, 3)
    assert moved.shape == expected_shape
    assert ka_ops.shape_to_channels_last(x.shape, data_format) == expected_shape
    assert ka_ops.shape_from_channels_last(expected_shape, data_format) == x.shape
    axes = ka_ops.spatial_axes(data_format, 5)
    assert axes == ((1, 2, 3) if data_format == "channels_last" else (2, 3, 4))
    mean = to_numpy(ka_ops.spatial_mean(x, data_format))
    channel = -1 if data_format == "channels_last" else 1
    np.testing.assert_allclose(mean, x.mean(axis=axes), rtol=1e-6)
    gate = np.ones((2, x.shape[channel]), "float32")
    assert to_numpy(x * ka_ops.expand_channels(gate, data_format, 5)).shape == x.shape


def test_depthwise_conv_3d_ignores_the_global_data_format():
    """The helper is channels_last whatever `image_data_format` says (layers transpose first)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 4, 5, 6, 3)).astype("float32")
    kernel = rng.normal(size=(3, 3, 3, 3, 1)).astype("float32")
    expected = to_numpy(ka_ops.depthwise_conv(x, kernel))
    keras.config.set_image_data_format("channels_first")  # conftest restores it
    np.testing.assert_allclose(to_numpy(ka_ops.depthwise_conv(x, kernel)), expected, rtol=1e-6)
    assert DepthwiseConv3D(3)(x).shape == x.shape


def channels(x, data_format):
    """A channels_last NumPy volume in `data_format`."""
    return x if data_format == "channels_last" else np.moveaxis(x, -1, 1)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize(
    ("pool_size", "strides"), [(2, None), (3, 2), ((3, 2, 3), 1), ((2, 3, 1), (1, 2, 2))]
)
def test_max_pool_3d_equals_keras_max_pool(data_format, padding, pool_size, strides):
    """The 2-D pools give MaxPool3D's values, odd sizes and "same" edges included."""
    rng = np.random.default_rng(5)
    # Odd sizes: "same" pads after more than before, "valid" drops a remainder.
    x = channels(rng.normal(size=(2, 5, 7, 6, 3)).astype("float32"), data_format)
    kwargs = {"padding": padding, "data_format": data_format}
    # Keras's JAX max_pool fails on strides=None (it converts pool_size twice).
    expected = to_numpy(keras.ops.max_pool(x, pool_size, strides or pool_size, **kwargs))
    actual = to_numpy(ka_ops.max_pool(x, pool_size, strides, **kwargs))
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)  # maxima: no rounding


def test_max_pool_3d_of_negative_values_ignores_the_padding():
    """ "same" padding never wins a window, even where every value is negative."""
    x = -1.0 - np.random.default_rng(6).random((1, 5, 5, 3, 2)).astype("float32")
    actual = to_numpy(ka_ops.max_pool(x, 3, strides=2, padding="same"))
    expected = to_numpy(keras.ops.max_pool(x, 3, strides=2, padding="same"))
    assert actual.max() < -1.0
    np.testing.assert_array_equal(actual, expected)


def test_max_pool_3d_runs_in_float16():
    """TensorFlow's CPU has no float16 MaxPool3D; the 2-D pools run, with float32's maxima."""
    x = np.random.default_rng(7).normal(size=(1, 4, 5, 6, 2)).astype("float16")
    actual = ka_ops.max_pool(x, 3, strides=2, padding="same")
    assert keras.backend.standardize_dtype(actual.dtype) == "float16"
    expected = keras.ops.max_pool(x.astype("float32"), 3, strides=2, padding="same")
    np.testing.assert_array_equal(to_numpy(actual), to_numpy(expected).astype("float16"))


def test_max_pool_of_an_image_is_keras_max_pool():
    x = np.random.default_rng(8).normal(size=(2, 7, 5, 3)).astype("float32")
    np.testing.assert_array_equal(
        to_numpy(ka_ops.max_pool(x, 3, strides=2, padding="same")),
        to_numpy(keras.ops.max_pool(x, 3, strides=2, padding="same")),
    )


def conv3d_reference(x, kernel, strides, padding, dilation):
    """A channels_last 3-D convolution in NumPy loops, "same" padded as TensorFlow pads."""
    spans = [d * (k - 1) + 1 for k, d in zip(kernel.shape[:3], dilation)]
    sizes = x.shape[1:4]
    if padding == "same":
        totals = [
            max((-(-n // s) - 1) * s + span - n, 0) for n, s, span in zip(sizes, strides, spans)
        ]
        x = np.pad(x, ((0, 0), *[(t // 2, t - t // 2) for t in totals], (0, 0)))
    outs = [(n - span) // s + 1 for n, s, span in zip(x.shape[1:4], strides, spans)]
    out = np.zeros((x.shape[0], *outs, kernel.shape[-1]))
    for taps in np.ndindex(*kernel.shape[:3]):
        starts = [t * d for t, d in zip(taps, dilation)]
        window = x[
            :,
            starts[0] : starts[0] + (outs[0] - 1) * strides[0] + 1 : strides[0],
            starts[1] : starts[1] + (outs[1] - 1) * strides[1] + 1 : strides[1],
            starts[2] : starts[2] + (outs[2] - 1) * strides[2] + 1 : strides[2],
        ]
        out += window @ kernel[taps]
    return out


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("dilation", [(2, 2, 2), (2, 1, 3), (1, 2, 1)])
def test_dilated_conv_3d_equals_keras_conv(data_format, padding, dilation):
    rng = np.random.default_rng(9)
    x = channels(rng.normal(size=(2, 7, 9, 8, 3)).astype("float32"), data_format)
    kernel = rng.normal(size=(3, 3, 2, 3, 4)).astype("float32")
    kwargs = {"padding": padding, "data_format": data_format, "dilation_rate": dilation}
    expected = to_numpy(keras.ops.conv(x, kernel, **kwargs))
    actual = to_numpy(ka_ops.conv(x, kernel, **kwargs))
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_dilated_conv_3d_with_a_spatial_stride_equals_the_reference(padding):
    """Strides in height and width (TensorFlow refuses them with a dilation in keras.ops.conv)."""
    rng = np.random.default_rng(10)
    x = rng.normal(size=(1, 7, 9, 8, 2)).astype("float32")
    kernel = rng.normal(size=(3, 3, 3, 2, 3)).astype("float32")
    strides, dilation = (1, 2, 2), (2, 1, 1)
    actual = to_numpy(
        ka_ops.conv(x, kernel, strides=strides, padding=padding, dilation_rate=dilation)
    )
    expected = conv3d_reference(x, kernel, strides, padding, dilation)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_dilated_conv_3d_refuses_a_depth_stride():
    x = np.zeros((1, 5, 5, 5, 2), "float32")
    kernel = np.zeros((3, 3, 3, 2, 2), "float32")
    with pytest.raises(ValueError, match="strides=\\(2, 1, 1\\)"):
        ka_ops.conv(x, kernel, strides=(2, 1, 1), dilation_rate=2)


@pytest.mark.parametrize("groups", [1, 2])
def test_dilated_grouped_conv_3d_equals_keras_conv(groups):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 5, 6, 7, 4)).astype("float32")
    kernel = rng.normal(size=(3, 3, 3, 4 // groups, 4)).astype("float32")
    actual = to_numpy(ka_ops.grouped_conv(x, kernel, groups, dilation_rate=2))
    parts = np.split(x, groups, axis=-1)
    kernels = np.split(kernel, groups, axis=-1)
    expected = np.concatenate(
        [
            to_numpy(keras.ops.conv(p, k, padding="same", dilation_rate=2))
            for p, k in zip(parts, kernels)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
