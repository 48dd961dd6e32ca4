"""Reference implementations of our layers, timed beside them (`--vs-timm`).

`--vs-timm` times timm's own module for each layer that timm implements, on the same
input (NCHW, as timm runs it), in the same interleaved rounds as ours. Each entry of
`REFERENCES` builds timm's module from our built layer, with timm's settings set to
do the same work (the text beside it says which); short names missing from
`keras_attention.available()` are skipped, so entries for layers of other branches can sit
here before those land. timm's forward runs in `eval()` under `torch.no_grad()`, its
forward+backward in `train()` mode with the gradient of `sum(outputs)` (float32) to the
input and every parameter, like ours. Under a mixed policy timm runs under
`torch.autocast` with the policy's compute dtype. On a GPU (`torch.cuda.is_available()`)
timm runs there and each call ends with `torch.cuda.synchronize()`.
"""

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class Reference:
    """The reference module of one of our layers, built to do the same work.

    Attributes:
        label: its name in the report.
        path: the module's class as "package.module.Class", or a function of our built
            layer that gives it (where one of our arguments picks the class).
        kwargs: a function of our built layer, its channels and the NHWC input shape
            that gives the class's constructor arguments.
        settings: what `kwargs` matches to ours, in the report's words.
        reference: the library the class comes from: "timm" in this table (2-D, run by
            `--vs-timm`); "monai", "timm_3d" and "mmcv" in `volume_references`'s
            `VOLUME_REFERENCES` (3-D, run by `--volumes`).
    """

    label: str
    path: str | Callable
    kwargs: Callable
    settings: str
    reference: str = "timm"


def _units(layer, channels, attribute="units", minimum=1):
    """Our hidden width: the explicit `units` or C // reduction (at least `minimum`)."""
    units = getattr(layer, attribute, None)
    return units or max(minimum, channels // layer.reduction)


def _torch_batch_norm():
    return importlib.import_module("torch").nn.BatchNorm2d


def _self_attention(layer, channels, shape, **kwargs):
    """timm's BoT, halo and lambda layers: our heads and key width at the input's size."""
    return dict(
        dim=channels,
        feat_size=shape[1:3],
        num_heads=layer.num_heads,
        dim_head=layer.key_dim,
        qkv_bias=layer.use_bias,
        **kwargs,
    )


def _non_local(layer, channels, shape):
    if layer.mode != "embedded_gaussian" or layer.sub_sample:
        raise ValueError("timm's NonLocalAttn is embedded Gaussian without sub-sampling")
    inter = layer.inter_channels or max(1, channels // 2)
    return {"in_channels": channels, "use_scale": False, "rd_channels": inter}


# Short name -> its reference module. Names missing from keras_attention.available() are
# skipped, so entries for layers still on other branches can sit here before they land.
REFERENCES = {
    "se": Reference(
        "SEModule",
        "timm.layers.squeeze_excite.SEModule",
        lambda layer, c, shape: {"channels": c, "rd_channels": _units(layer, c), "bias": True},
        "rd_channels=C//reduction, bias=True (ReLU, sigmoid)",
    ),
    "eca": Reference(
        "EcaModule",
        lambda layer: (
            "timm.layers.eca." + ("CecaModule" if layer.padding == "circular" else "EcaModule")
        ),
        lambda layer, c, shape: {"channels": c, "kernel_size": layer.conv.kernel.shape[0]},
        "our kernel size (CecaModule for circular padding)",
    ),
    "cbam": Reference(
        "CbamModule",
        "timm.layers.cbam.CbamModule",
        lambda layer, c, shape: {
            "channels": c,
            "rd_channels": _units(layer, c),
            "spatial_kernel_size": layer.kernel_size,
            "mlp_bias": True,
        },
        "rd_channels=C//reduction, mlp_bias=True, our kernel",
    ),
    "channel_gate": Reference(
        "cbam.ChannelAttn",
        "timm.layers.cbam.ChannelAttn",
        lambda layer, c, shape: {"channels": c, "rd_channels": _units(layer, c), "mlp_bias": True},
        "rd_channels, mlp_bias=True",
    ),
    "spatial_gate": Reference(
        "cbam.SpatialAttn",
        "timm.layers.cbam.SpatialAttn",
        lambda layer, c, shape: {"kernel_size": layer.kernel_size},
        "our kernel size (conv+BN)",
    ),
    "sk": Reference(
        "SelectiveKernel",
        "timm.layers.selective_kernel.SelectiveKernel",
        lambda layer, c, shape: {
            "in_channels": c,
            "out_channels": layer.filters or c,
            "kernel_size": [1 + 2 * d for d in layer.dilations],  # 3x3 with dilation d (keep_3x3)
            "stride": getattr(layer, "strides", 1),
            "groups": layer.groups,
            "rd_channels": layer.fuse_dense.units,
            "split_input": getattr(layer, "split_input", False),
        },
        "our groups, dilations (keep_3x3), stride, split_input and fuse width",
    ),
    "non_local": Reference(
        "NonLocalAttn",
        "timm.layers.non_local_attn.NonLocalAttn",
        _non_local,
        "use_scale=False, rd_channels=C/2 (its extra phi, g, W biases kept)",
    ),
    "gc": Reference(
        "GlobalContext",
        "timm.layers.global_context.GlobalContext",
        lambda layer, c, shape: {
            "channels": c,
            "use_attn": layer.pooling == "attention",
            "fuse_add": "add" in layer.fusion,
            "fuse_scale": "mul" in layer.fusion,
            "rd_channels": layer.units or max(1, int(c / layer.reduction + 0.5)),
        },
        "our pooling, fusion and width",
    ),
    "split_attention": Reference(
        "SplitAttn",
        "timm.layers.split_attn.SplitAttn",
        lambda layer, c, shape: {
            "in_channels": c,
            "out_channels": layer.filters or c,
            "kernel_size": layer.kernel_size,
            "stride": layer.strides,
            "groups": layer.cardinality,
            "radix": layer.radix,
            "rd_channels": layer._units,
            "norm_layer": _torch_batch_norm(),
        },
        "our radix, cardinality, width; BatchNorm",
    ),
    "ge": Reference(
        "GatherExcite",
        "timm.layers.gather_excite.GatherExcite",
        lambda layer, c, shape: {
            "channels": c,
            "feat_size": shape[1:3],
            "extra_params": layer.extra_params,
            "extent": layer.extent,
            "use_mlp": layer.use_mlp,
            "rd_channels": _units(layer, c),
        },
        "our extent, extra_params, use_mlp and width",
    ),
    "coord": Reference(
        "CoordAttn",
        "timm.layers.coord_attn.CoordAttn",
        lambda layer, c, shape: {
            "channels": c,
            "rd_channels": max(layer.min_units, c // layer.reduction),
            "bias": True,
        },
        "rd_channels=max(min_units, C//reduction), bias=True",
    ),
    "ese": Reference(
        "EffectiveSEModule",
        "timm.layers.squeeze_excite.EffectiveSEModule",
        lambda layer, c, shape: {"channels": c, "gate_layer": layer.gate},
        "our gate",
    ),
    "bot": Reference(
        "BottleneckAttn",
        "timm.layers.bottleneck_attn.BottleneckAttn",
        lambda layer, c, shape: _self_attention(
            layer, c, shape, scale_pos_embed=layer.scale_position_logits
        ),
        "our heads, key width, feature size",
    ),
    "halo": Reference(
        "HaloAttn",
        "timm.layers.halo_attn.HaloAttn",
        lambda layer, c, shape: _self_attention(
            layer,
            c,
            shape,
            block_size=layer.block_size,
            halo_size=layer.halo_size,
            scale_pos_embed=layer.scale_position_logits,
        ),
        "our heads, key width, block and halo",
    ),
    "lambda": Reference(
        "LambdaLayer",
        "timm.layers.lambda_layer.LambdaLayer",
        lambda layer, c, shape: _self_attention(layer, c, shape, r=layer.context_size),
        "our heads, key width, context size r",
    ),
}


def _class(path):
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def import_timm(name="timm"):
    """timm (with `timm.torch`), or None (the reason on stderr) when it cannot load;
    `name="timm_3d"`: timm-3d, the same way."""
    try:
        importlib.import_module(f"{name}.layers")
    except (ImportError, RuntimeError):
        # PyPI's torchvision does not load beside a CPU torch wheel: the tests' stubs.
        tests = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests")
        if tests not in sys.path:
            sys.path.insert(0, tests)
        try:
            importlib.import_module("timm_import").import_timm(name)
            importlib.import_module(f"{name}.layers")
        except (ImportError, RuntimeError) as error:
            print(f"{name} cannot be imported ({error})", file=sys.stderr)
            return None
    timm = sys.modules[name]
    timm.torch = importlib.import_module("torch")
    return timm


def timm_module(timm, name, layer, shape):
    """timm's module equivalent to our built `layer` at `shape`, or an error message."""
    entry = REFERENCES.get(name)
    if entry is None or entry.reference != "timm":
        return None, "no timm equivalent"
    try:
        path = entry.path(layer) if callable(entry.path) else entry.path
        return _class(path)(**entry.kwargs(layer, shape[-1], tuple(shape))), None
    except Exception as error:  # noqa: BLE001 (any argument timm cannot express)
        return None, " ".join(f"{type(error).__name__}: {error}".split())


def timm_device(torch):
    return "cuda" if torch.cuda.is_available() else "cpu"


def timm_calls(timm, module, x):
    """forward() and train() of a PyTorch module (timm's, or a 3-D reference's) on `x`
    (our channels-last input, 4-D or 5-D), like ours; `timm.torch` is torch."""
    torch = timm.torch
    device = timm_device(torch)
    compute_dtype = keras.config.dtype_policy().compute_dtype
    dtype = getattr(torch, compute_dtype)
    # Channels after the batch (NCHW, NCDHW), as PyTorch's modules take them.
    values = np.moveaxis(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")), -1, 1)
    x = torch.from_numpy(values.copy()).to(device=device, dtype=dtype)
    module = module.to(device)
    mixed = compute_dtype != "float32"

    def autocast():
        return torch.autocast(device, dtype=dtype, enabled=mixed)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def run_forward():
        module.eval()
        with torch.no_grad(), autocast():
            out = module(x)
        sync()
        return out

    def run_train():
        module.train()
        for parameter in module.parameters():
            parameter.grad = None
        leaf = x.detach().requires_grad_(True)
        with autocast():
            out = module(leaf)
        out.float().sum().backward()
        sync()
        return leaf.grad

    return run_forward, run_train
