import keras
import numpy as np
import pytest
from helpers import input_gradient
from helpers import to_numpy
from helpers import trainable_gradients

from keras_attention import ops as ka_ops


def grouped_conv_reference(x, kernel, groups, strides, padding, rate):
    """A grouped convolution in NumPy loops (channels_last, Keras kernel layout)."""
    kh, kw, group_in, filters = kernel.shape
    group_out = filters // groups
    span_h, span_w = rate * (kh - 1) + 1, rate * (kw - 1) + 1
    if padding == "same":
        top, left = (span_h - 1) // 2, (span_w - 1) // 2
        x = np.pad(x, ((0, 0), (top, span_h - 1 - top), (left, span_w - 1 - left), (0, 0)))
    height = (x.shape[1] - span_h) // strides + 1
    width = (x.shape[2] - span_w) // strides + 1
    out = np.zeros((x.shape[0], height, width, filters))
    for g in range(groups):
        inputs = x[..., g * group_in : (g + 1) * group_in]
        weights = kernel[..., g * group_out : (g + 1) * group_out]
        for i in range(kh):
            for j in range(kw):
                window = inputs[
                    :,
                    i * rate : i * rate + (height - 1) * strides + 1 : strides,
                    j * rate : j * rate + (width - 1) * strides + 1 : strides,
                ]
                out[..., g * group_out : (g + 1) * group_out] += window @ weights[i, j]
    return out


@pytest.mark.parametrize("per_group", [True, False], ids=["per_group", "one_grouped_conv"])
@pytest.mark.parametrize(
    ("strides", "padding", "rate"),
    [(1, "same", 1), (1, "same", 2), (2, "valid", 1), (1, "valid", 3)],
)
def test_grouped_conv_equals_the_reference_on_both_paths(
    monkeypatch, per_group, strides, padding, rate
):
    """The per-group path (TensorFlow and JAX on a CPU) and one grouped conv compute the same sums."""
    monkeypatch.setattr(ka_ops, "_computes_on_cpu", lambda: per_group)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 8, 12)).astype("float32")
    kernel = rng.normal(size=(3, 3, 3, 8)).astype("float32")
    expected = grouped_conv_reference(x, kernel, 4, strides, padding, rate)
    outputs = ka_ops.grouped_conv(
        x, kernel, 4, strides=strides, padding=padding, dilation_rate=rate
    )
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-4, atol=1e-4)


class KernelOnly(keras.layers.Layer):
    """A layer holding one conv kernel that `convolve(inputs, kernel)` applies."""

    def __init__(self, kernel, convolve):
        super().__init__()
        self.kernel = self.add_weight(shape=kernel.shape, name="kernel")
        self.kernel.assign(kernel)
        self.convolve = convolve

    def call(self, inputs, training=None):
        return self.convolve(inputs, self.kernel)


def test_grouped_conv_per_group_gradients_equal_one_grouped_conv():
    """The per-group path's kernel gradients are those of Keras's grouped convolution."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 7, 6, 8)).astype("float32")
    kernel = rng.normal(size=(3, 3, 4, 6)).astype("float32")
    ours = KernelOnly(kernel, lambda x, k: ka_ops.grouped_conv(x, k, 2))
    # keras.ops.conv infers the groups from the kernel's input width.
    keras_ = KernelOnly(kernel, lambda x, k: keras.ops.conv(x, k, padding="same"))
    np.testing.assert_allclose(
        trainable_gradients(ours, x)[0], trainable_gradients(keras_, x)[0], rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("shape", [(2, 5, 7, 8), (2, 3, 5, 7, 8)], ids=["image", "clip"])
def test_spatial_mean_equals_numpy_forward_and_gradient(shape, data_format):
    # channels_last float32 takes the backend fast path (TensorFlow's AvgPool with
    # mean's gradient, PyTorch's avg_pool); channels_first the keras.ops form.
    channels_first = data_format == "channels_first"
    full = (shape[0], shape[-1], *shape[1:-1]) if channels_first else shape
    x = np.random.default_rng(0).normal(size=full).astype("float32")
    axes = ka_ops.spatial_axes(data_format, len(full))
    layer = keras.layers.Lambda(lambda t: ka_ops.spatial_mean(t, data_format))
    np.testing.assert_allclose(to_numpy(layer(x)), x.mean(axis=axes), rtol=1e-6, atol=1e-6)
    # input_gradient's loss is sum(outputs * N(0, 1) from seed 1): each position
    # receives its channel's projection / count.
    projection = np.random.default_rng(1).normal(size=(shape[0], shape[-1])).astype("float32")
    count = np.prod([full[a] for a in axes])
    expected = np.broadcast_to(np.expand_dims(projection, axes) / count, full)
    np.testing.assert_allclose(input_gradient(layer, x), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("axes", [1, 2, (1, 2)], ids=["columns", "rows", "both"])
def test_spatial_mean_over_some_axes_equals_numpy_forward_and_gradient(axes):
    # CoordinateAttention's strip means: a channels_last float32 image takes the
    # fast path (AvgPool with a (1, W) or (H, 1) window, PyTorch's avg_pool2d).
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 8)).astype("float32")
    layer = keras.layers.Lambda(lambda t: ka_ops.spatial_mean(t, "channels_last", axes=axes))
    expected = x.mean(axis=axes)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-6, atol=1e-6)
    projection = np.random.default_rng(1).normal(size=expected.shape).astype("float32")
    count = np.prod([x.shape[a] for a in np.atleast_1d(axes)])
    gradient = np.broadcast_to(np.expand_dims(projection, axes) / count, x.shape)
    np.testing.assert_allclose(input_gradient(layer, x), gradient, rtol=1e-6, atol=1e-7)


def test_spatial_mean_axes_must_be_spatial():
    with pytest.raises(ValueError, match="axes"):
        ka_ops.spatial_mean(np.zeros((2, 5, 7, 8), "float32"), "channels_last", axes=3)


def test_spatial_mean_of_run_time_sizes_equals_static_sizes():
    # A model on Input((None, None, C)) sees no static sizes (TensorFlow: no AvgPool).
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 8)).astype("float32")
    inputs = keras.Input((None, None, 8))
    model = keras.Model(
        inputs,
        keras.layers.Lambda(ka_ops.spatial_mean, arguments={"data_format": "channels_last"})(
            inputs
        ),
    )
    np.testing.assert_allclose(
        model.predict(x, verbose=0), x.mean(axis=(1, 2)), rtol=1e-6, atol=1e-6
    )
