"""Keras weights in PyTorch's layouts, for references written after the papers' PyTorch code.

The tests re-state each authors' forward pass with `torch.nn.functional` and
feed it our layer's weights: Keras kernels are channels_last, PyTorch's are
(out, in, *kernel).
"""

import numpy as np
import pytest
from helpers import to_numpy

torch = pytest.importorskip("torch")


def tensor(value):
    return torch.tensor(np.asarray(to_numpy(value)))


def conv2d_kernel(kernel):
    """Keras Conv2D (kh, kw, in, out) -> torch (out, in, kh, kw)."""
    return tensor(kernel).permute(3, 2, 0, 1)


def depthwise2d_kernel(kernel):
    """Keras DepthwiseConv2D (kh, kw, C, 1) -> torch grouped (C, 1, kh, kw)."""
    return tensor(kernel).permute(2, 3, 0, 1)


def depthwise1d_kernel(kernel):
    """Keras DepthwiseConv1D (k, C, 1) -> torch grouped Conv1d (C, 1, k)."""
    return tensor(kernel).permute(1, 2, 0)


def dense_kernel(kernel):
    """Keras Dense (in, out) -> torch Linear (out, in)."""
    return tensor(kernel).T


def nchw(x):
    return torch.tensor(x).permute(0, 3, 1, 2)


def nhwc_numpy(x):
    return x.permute(0, 2, 3, 1).detach().numpy()


def batch_norm(x, norm):
    """Inference BatchNorm with a Keras BatchNormalization's weights (epsilon from it)."""
    return torch.nn.functional.batch_norm(
        x,
        tensor(norm.moving_mean),
        tensor(norm.moving_variance),
        tensor(norm.gamma),
        tensor(norm.beta),
        training=False,
        eps=norm.epsilon,
    )
