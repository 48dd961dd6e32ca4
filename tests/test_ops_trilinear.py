"""ops.affine_grid_3d and ops.trilinear_sample against PyTorch's affine_grid/grid_sample on 5-D."""

import numpy as np
import pytest
from helpers import to_numpy

from keras_attention import ops as ka_ops

torch = pytest.importorskip("torch")
functional = torch.nn.functional

THETAS = np.array(
    [
        [[0.8, -0.3, 0.1, 0.1], [0.4, 1.1, -0.2, -0.2], [0.1, 0.2, 0.9, 0.15]],
        [[1.3, 0.2, -0.1, -0.4], [-0.5, 0.7, 0.3, 0.3], [-0.2, 0.1, 1.2, -0.1]],
    ],
    "float32",
)


def volumes(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("size", [(3, 4, 9), (5, 2, 6)])
def test_affine_grid_3d_matches_torch(size):
    expected = functional.affine_grid(torch.tensor(THETAS), (2, 1, *size), align_corners=False)
    ours = to_numpy(ka_ops.affine_grid_3d(THETAS, *size))
    assert ours.shape == (2, *size, 3)
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("out_size", [(4, 6, 5), (3, 7, 2)])
def test_trilinear_sample_matches_torch_grid_sample(out_size):
    x = volumes((2, 4, 6, 5, 3), seed=1)
    grid = functional.affine_grid(torch.tensor(THETAS), (2, 3, *out_size), align_corners=False)
    expected = functional.grid_sample(
        torch.tensor(x).permute(0, 4, 1, 2, 3),
        grid,
        mode="bilinear",  # trilinear on 5-D inputs
        align_corners=False,
        padding_mode="zeros",
    ).permute(0, 2, 3, 4, 1)
    outputs = to_numpy(ka_ops.trilinear_sample(x, grid.numpy()))
    assert outputs.shape == (2, *out_size, 3)
    # Some points fall outside (zeros) and some inside: both paths are tested.
    assert (np.abs(expected.numpy()) < 1e-12).any() and np.abs(expected.numpy()).max() > 0.5
    np.testing.assert_allclose(outputs, expected.numpy(), atol=1e-5)


def test_points_far_outside_read_zeros():
    x = volumes((1, 3, 4, 5, 2), seed=2)
    grid = np.full((1, 2, 2, 2, 3), 5.0, "float32")
    grid[..., 2] = -7.0
    np.testing.assert_array_equal(to_numpy(ka_ops.trilinear_sample(x, grid)), 0.0)


def test_trilinear_sample_keeps_the_dtype():
    x = volumes((1, 3, 4, 5, 2), seed=3).astype("float16")
    grid = ka_ops.affine_grid_3d(THETAS[:1], 3, 4, 5)
    outputs = ka_ops.trilinear_sample(x, grid)
    assert "float16" in str(outputs.dtype)
