"""SelectiveKernel equals timm's `SelectiveKernel` with the same weights (float32, eval)."""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention.layers import SelectiveKernel

torch = pytest.importorskip("torch")


def timm_module(**kwargs):
    from timm_import import import_timm

    import_timm()
    from timm.layers import SelectiveKernel as TimmSelectiveKernel

    return TimmSelectiveKernel(**kwargs).eval()


def copy_norm(keras_norm, torch_norm):
    gamma, beta, mean, variance = (to_numpy(w) for w in keras_norm.weights)
    for name, value in (
        ("weight", gamma),
        ("bias", beta),
        ("running_mean", mean),
        ("running_var", variance),
    ):
        getattr(torch_norm, name).data = torch.from_numpy(value)


def copy_weights(layer, module):
    """Our weights into timm's module (conv kernels HWIO -> OIHW, Dense -> 1x1 conv)."""
    for conv, norm, path in zip(layer.branch_convs, layer.branch_norms, module.paths):
        path.conv.weight.data = torch.from_numpy(to_numpy(conv.kernel).transpose(3, 2, 0, 1).copy())
        copy_norm(norm, path.bn)
    attn = module.attn
    attn.fc_reduce.weight.data = torch.from_numpy(
        to_numpy(layer.fuse_dense.kernel).T[..., None, None].copy()
    )
    copy_norm(layer.fuse_bn, attn.bn)
    attn.fc_select.weight.data = torch.from_numpy(
        to_numpy(layer.select.kernel).T[..., None, None].copy()
    )


@pytest.mark.parametrize(
    "split_input, groups, strides, filters",
    [(False, 4, 1, 32), (True, 1, 2, 32), (True, 2, 1, 16)],
)
def test_matches_timm(split_input, groups, strides, filters):
    channels, units = 16, 8
    layer = SelectiveKernel(
        filters=filters, groups=groups, units=units, strides=strides, split_input=split_input
    )
    x = np.random.default_rng(0).normal(size=(2, 9, 8, channels)).astype("float32")
    layer(x)
    randomize_weights(layer)
    module = timm_module(
        in_channels=channels,
        out_channels=filters,
        stride=strides,
        groups=groups,
        rd_channels=units,
        split_input=split_input,
    )
    copy_weights(layer, module)
    with torch.no_grad():
        expected = module(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    actual = to_numpy(layer(x, training=False)).transpose(0, 3, 1, 2)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
