"""SpatialTransformer: identity, known translations, bilinear weights, gradients, saving."""

import json

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy
from helpers import trainable_gradients

from keras_attention import ops as ka_ops
from keras_attention.layers import SpatialTransformer


def images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def with_theta(x, theta, **kwargs):
    """A built layer whose theta is the constant `theta` (kernel 0, bias theta)."""
    layer = SpatialTransformer(**kwargs)
    layer(x)
    layer.theta.bias.assign(np.asarray(theta, "float32").reshape(6))
    return layer


def test_identity_theta_reproduces_the_input():
    x = images((2, 6, 10, 3))
    outputs, theta = SpatialTransformer()(x, return_attention=True)
    np.testing.assert_array_equal(to_numpy(theta), np.tile([[1, 0, 0], [0, 1, 0]], (2, 1, 1)))
    np.testing.assert_allclose(to_numpy(outputs), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dx, dy", [(2, 1), (-3, 0), (0, -2)])
def test_translation_moves_by_whole_pixels(dx, dy):
    # align_corners=False: a shift of 2k / W in normalised units is k pixels,
    # and output pixel j reads input pixel j + k (zeros past the border).
    x = images((1, 6, 10, 2), seed=1)
    outputs = to_numpy(with_theta(x, [1, 0, 2 * dx / 10, 0, 1, 2 * dy / 6])(x))
    expected = np.zeros_like(x)
    rows, cols = np.arange(6), np.arange(10)
    src_r, src_c = rows + dy, cols + dx
    keep_r, keep_c = (src_r >= 0) & (src_r < 6), (src_c >= 0) & (src_c < 10)
    expected[:, rows[keep_r][:, None], cols[keep_c]] = x[:, src_r[keep_r][:, None], src_c[keep_c]]
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-5)


def test_half_pixel_shift_averages_neighbours():
    x = images((1, 4, 8, 2), seed=2)
    outputs = to_numpy(with_theta(x, [1, 0, 1 / 8, 0, 1, 0])(x))
    padded = np.concatenate([x, np.zeros_like(x[:, :, :1])], axis=2)  # zeros outside
    np.testing.assert_allclose(outputs, (padded[:, :, :-1] + padded[:, :, 1:]) / 2, atol=1e-5)


def test_output_size_resamples_the_same_region():
    # Identity theta onto half the size samples between 2x2 blocks of pixels:
    # bilinear weights of 1/4 each, i.e. 2x2 average pooling.
    x = images((2, 6, 10, 4), seed=3)
    layer = SpatialTransformer(output_size=(3, 5))
    outputs = to_numpy(layer(x))
    assert outputs.shape == (2, 3, 5, 4) == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(outputs, x.reshape(2, 3, 2, 5, 2, 4).mean(axis=(2, 4)), atol=1e-5)
    symbolic = layer(keras.Input((None, None, 4)))
    assert tuple(symbolic.shape) == (None, 3, 5, 4)


def test_sampler_matches_torch_grid_sample():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x = images((2, 5, 7, 3), seed=4)
    theta = np.array(
        [[[0.8, -0.3, 0.1], [0.4, 1.1, -0.2]], [[1.3, 0.2, -0.4], [-0.5, 0.7, 0.3]]], "float32"
    )
    grid = functional.affine_grid(torch.tensor(theta), (2, 3, 4, 9), align_corners=False)
    expected = functional.grid_sample(
        torch.tensor(x).permute(0, 3, 1, 2), grid, align_corners=False, padding_mode="zeros"
    ).permute(0, 2, 3, 1)
    ours = ka_ops.affine_grid(theta, 4, 9)
    np.testing.assert_allclose(to_numpy(ours), grid.numpy(), atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(ka_ops.bilinear_sample(x, ours)), expected.numpy(), atol=1e-5
    )


def test_gradients_reach_theta_at_initialisation():
    x = images((2, 6, 10, 3), seed=5)
    layer = SpatialTransformer()
    layer(x)
    gradients = dict(zip((w.path for w in layer.trainable_weights), trainable_gradients(layer, x)))
    for name in ("theta/kernel", "theta/bias"):
        (gradient,) = [g for path, g in gradients.items() if path.endswith(name)]
        assert np.abs(gradient).max() > 1e-3, name


def small_localization(channels):
    return keras.Sequential(
        [
            keras.Input((None, None, channels)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.GlobalMaxPooling2D(name="pool"),
        ],
        name="loc",
    )


def test_user_localization_round_trips_through_keras_file(tmp_path):
    inputs = keras.Input((None, None, 3))
    layer = SpatialTransformer(localization=small_localization(3), output_size=(4, 5))
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    assert len(layer.weights) == 4  # the user's conv + theta, nothing else
    x = images((2, 6, 7, 3), seed=6)
    expected = to_numpy(model(x))
    assert np.abs(expected).max() > 0
    path = tmp_path / "stn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe mode, no custom_objects
    loaded_layer = loaded.layers[-1]
    assert isinstance(loaded_layer.localization, keras.Model)
    # As JSON: Keras reloads the nested model's build shapes as lists.
    assert json.dumps(loaded_layer.get_config(), sort_keys=True) == json.dumps(
        layer.get_config(), sort_keys=True
    )
    np.testing.assert_allclose(to_numpy(loaded(x)), expected, rtol=1e-6, atol=1e-6)


def test_localization_must_output_features():
    conv_only = keras.layers.Conv2D(2, 3, name="not_flat")
    with pytest.raises(ValueError, match="`localization`"):
        SpatialTransformer(localization=conv_only)(images((1, 6, 6, 3)))


@pytest.mark.parametrize(
    "name, value",
    [
        ("localization", "cnn"),
        ("localization", keras.layers.Conv2D),
        ("output_size", (0, 4)),
        ("output_size", (8,)),
        ("output_size", (2, 8, 8, 8)),
        ("output_size", (2, 0, 8)),
        ("output_size", 8),
        ("output_size", (8, 2.5)),
    ],
)
def test_bad_arguments_raise(name, value):
    with pytest.raises(ValueError, match=f"`{name}`"):
        SpatialTransformer(**{name: value})


def test_channels_first_matches_channels_last_with_a_working_localization():
    # The contract's random weights send theta far outside the image (zeros
    # out); here the localisation net's features move theta, inside the image.
    x = images((2, 6, 10, 3))
    last = SpatialTransformer(data_format="channels_last")
    last(x)
    randomize_weights(last)
    last.theta.kernel.assign(0.1 * keras.ops.convert_to_numpy(last.theta.kernel))
    last.theta.bias.assign(np.asarray([0.8, 0.1, 0.05, -0.1, 0.9, -0.05], "float32"))
    first = SpatialTransformer(data_format="channels_first")
    first(np.transpose(x, (0, 3, 1, 2)))
    first.set_weights(last.get_weights())
    expected, theta = last(x, return_attention=True)
    expected, theta = to_numpy(expected), to_numpy(theta)
    assert np.ptp(theta[:, 0, 2]) > 1e-3  # theta depends on the input
    assert np.abs(expected).max() > 0.5
    actual = to_numpy(first(np.transpose(x, (0, 3, 1, 2))))
    np.testing.assert_allclose(np.transpose(actual, (0, 2, 3, 1)), expected, rtol=1e-5, atol=1e-5)


# Volumes and clips: a 3x4 theta, a 3-D grid and the trilinear sampler.

IDENTITY_3D = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]


def with_theta_3d(x, theta, **kwargs):
    """A built layer on clips whose theta is the constant 3x4 `theta`."""
    layer = SpatialTransformer(**kwargs)
    layer(x)
    assert tuple(layer.theta.kernel.shape) == (32, 12)
    layer.theta.bias.assign(np.asarray(theta, "float32").reshape(12))
    return layer


def test_identity_theta_reproduces_the_clip():
    x = images((2, 4, 6, 10, 3))
    layer = SpatialTransformer()
    outputs, theta = layer(x, return_attention=True)
    np.testing.assert_array_equal(to_numpy(theta), np.tile(IDENTITY_3D, (2, 1, 1)))
    np.testing.assert_allclose(to_numpy(outputs), x, rtol=0, atol=1e-5)
    assert tuple(layer.loc_layers[0].kernel.shape) == (3, 3, 3, 3, 16)  # a Conv3D


@pytest.mark.parametrize("dz, dy, dx", [(1, 0, 0), (-2, 1, 0), (0, -1, 3)])
def test_translation_moves_clips_by_whole_voxels(dz, dy, dx):
    # Output voxel (k, i, j) reads input voxel (k + dz, i + dy, j + dx), zeros past the border.
    x = images((1, 4, 6, 10, 2), seed=6)
    theta = [[1, 0, 0, 2 * dx / 10], [0, 1, 0, 2 * dy / 6], [0, 0, 1, 2 * dz / 4]]
    outputs = to_numpy(with_theta_3d(x, theta)(x))
    padded = np.zeros((1, 4 + 8, 6 + 8, 10 + 8, 2), "float32")
    padded[:, 4:-4, 4:-4, 4:-4] = x
    expected = padded[:, 4 + dz : 8 + dz, 4 + dy : 10 + dy, 4 + dx : 14 + dx]
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-5)


def test_half_voxel_shift_in_depth_averages_frames():
    x = images((1, 4, 3, 5, 2), seed=7)
    outputs = to_numpy(with_theta_3d(x, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1 / 4]])(x))
    padded = np.concatenate([x, np.zeros_like(x[:, :1])], axis=1)  # zeros after the last frame
    np.testing.assert_allclose(outputs, (padded[:, :-1] + padded[:, 1:]) / 2, atol=1e-5)


def test_output_size_resamples_the_same_region_of_a_clip():
    # Identity theta onto half the size: trilinear weights of 1/8, 2x2x2 average pooling.
    x = images((2, 4, 6, 10, 3), seed=8)
    layer = SpatialTransformer(output_size=(2, 3, 5))
    outputs = to_numpy(layer(x))
    assert outputs.shape == (2, 2, 3, 5, 3) == layer.compute_output_shape(x.shape)
    pooled = x.reshape(2, 2, 2, 3, 2, 5, 2, 3).mean(axis=(2, 4, 6))
    np.testing.assert_allclose(outputs, pooled, atol=1e-5)
    symbolic = layer(keras.Input((None, None, None, 3)))
    assert tuple(symbolic.shape) == (None, 2, 3, 5, 3)


def test_output_size_must_match_the_rank():
    with pytest.raises(ValueError, match="`output_size`"):
        SpatialTransformer(output_size=(3, 5))(images((1, 4, 6, 10, 2)))
    with pytest.raises(ValueError, match="`output_size`"):
        SpatialTransformer(output_size=(2, 3, 5))(images((1, 6, 10, 2)))


THETAS_3D = np.array(
    [
        [[0.8, -0.3, 0.1, 0.1], [0.4, 1.1, -0.2, -0.2], [0.1, 0.2, 0.9, 0.15]],
        [[1.3, 0.2, -0.1, -0.4], [-0.5, 0.7, 0.3, 0.3], [-0.2, 0.1, 1.2, -0.1]],
    ],
    "float32",
)


def test_layer_matches_torch_affine_grid_and_grid_sample_on_clips():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x = images((2, 4, 6, 5, 3), seed=9)
    layer = SpatialTransformer()
    layer(x)
    layer.theta.kernel.assign(np.zeros((32, 12), "float32"))
    layer.theta.bias.assign(THETAS_3D[0].reshape(12))
    theta = torch.tensor(np.repeat(THETAS_3D[:1], 2, axis=0))
    grid = functional.affine_grid(theta, (2, 3, 4, 6, 5), align_corners=False)
    expected = functional.grid_sample(
        torch.tensor(x).permute(0, 4, 1, 2, 3), grid, align_corners=False, padding_mode="zeros"
    ).permute(0, 2, 3, 4, 1)
    assert np.abs(expected.numpy()).max() > 0.5  # the warp samples inside the clip
    np.testing.assert_allclose(to_numpy(layer(x)), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_gradients_reach_theta_at_initialisation_on_clips():
    x = images((2, 4, 6, 5, 3), seed=10)
    layer = SpatialTransformer()
    layer(x)
    gradients = dict(zip((w.path for w in layer.trainable_weights), trainable_gradients(layer, x)))
    for name in ("theta/kernel", "theta/bias"):
        (gradient,) = [g for path, g in gradients.items() if path.endswith(name)]
        assert np.abs(gradient).max() > 1e-3, name
