"""3-D reference modules of our layers, timed beside their volume forms (`--volumes`).

`VOLUME_REFERENCES` maps a short name to the PyTorch modules that do its 3-D work: MONAI's,
timm-3d's, mmcv's and fvcore's, each a `references.Reference` whose `reference` names its
library. Each is built from our built 3-D layer, with the library's settings set to do
the same work (its `settings` text says which), and run on the same input (NCDHW) by
`references.timm_calls`. Names missing from `keras_attention.available()`, or whose class
has no 3-D form yet, are skipped, so entries can sit here before those forms land.
"""

import importlib
import sys

from .references import Reference
from .references import _class
from .references import _units
from .references import import_timm


def _se_ratio(layer, channels):
    """MONAI's `r` for our hidden width: its hidden layer has `channels // r` units."""
    units = _units(layer, channels)
    ratio = channels // units
    if channels // ratio != units or layer.activation != "relu" or layer.gate != "sigmoid":
        raise ValueError(
            f"MONAI's ChannelSELayer has C // r hidden units, ReLU and a sigmoid: it cannot "
            f"take {units} units of {channels}, {layer.activation!r}, {layer.gate!r}"
        )
    return ratio


def _non_local(layer, channels):
    """mmcv's NonLocal3d (AlexHex7's form: keys pooled 1x2x2 after the phi and g convs)."""
    inter = layer.inter_channels or max(1, channels // 2)
    if channels % inter or getattr(layer, "pool_before", False):
        raise ValueError("mmcv's NonLocal3d has C // reduction channels and pools after phi and g")
    return {
        "in_channels": channels,
        "reduction": channels // inter,
        "use_scale": getattr(layer, "scale", False),
        "sub_sample": layer.sub_sample,
        "norm_cfg": {"type": "BN3d"} if layer.use_bn else None,
        "mode": layer.mode,
    }


def _scse(layer, channels):
    if layer.combine != "max":
        raise ValueError("fvcore's ChannelSpatialSqueezeExcitation takes the max of the two")
    reduced = max(1, channels // layer.reduction)
    return {"num_channels": channels, "num_channels_reduced": reduced, "is_3d": True}


# Short name -> its 3-D reference modules, in the order of the report.
VOLUME_REFERENCES = {
    "se": (
        Reference(
            "ChannelSELayer",
            "monai.networks.blocks.squeeze_and_excitation.ChannelSELayer",
            lambda layer, c, shape: {
                "spatial_dims": 3,
                "in_channels": c,
                "r": _se_ratio(layer, c),
            },
            "spatial_dims=3, r=C//units (ReLU, sigmoid)",
            reference="monai",
        ),
        Reference(
            "SEModule",
            "timm_3d.layers.squeeze_excite.SEModule",
            lambda layer, c, shape: {
                "channels": c,
                "rd_channels": _units(layer, c),
                "bias": True,
                "gate_layer": layer.gate,
            },
            "rd_channels=C//reduction, bias=True",
            reference="timm_3d",
        ),
    ),
    "eca": (
        Reference(
            "EcaModule",
            lambda layer: (
                "timm_3d.layers.eca."
                + ("CecaModule" if layer.padding == "circular" else "EcaModule")
            ),
            lambda layer, c, shape: {"channels": c, "kernel_size": layer.conv.kernel.shape[0]},
            "our kernel size (CecaModule for circular padding)",
            reference="timm_3d",
        ),
    ),
    "gc": (
        Reference(
            "GlobalContext",
            "timm_3d.layers.global_context.GlobalContext",
            lambda layer, c, shape: {
                "channels": c,
                "use_attn": layer.pooling == "attention",
                "fuse_add": "add" in layer.fusion,
                "fuse_scale": "mul" in layer.fusion,
                "rd_channels": layer.units or max(1, int(c / layer.reduction + 0.5)),
            },
            "our pooling, fusion and width",
            reference="timm_3d",
        ),
    ),
    # timm-3d's CbamModule, ChannelAttn, EffectiveSEModule, SelectiveKernel, SplitAttn,
    # GatherExcite and NonLocalAttn keep 2-D convolutions or pooling and fail on 5-D inputs
    # (timm-3d 1.0.1): only its spatial gate is paired.
    "spatial_gate": (
        Reference(
            "cbam.SpatialAttn",
            "timm_3d.layers.cbam.SpatialAttn",
            lambda layer, c, shape: {"kernel_size": layer.kernel_size},
            "our kernel size (conv+BN3d)",
            reference="timm_3d",
        ),
    ),
    "non_local": (
        Reference(
            "NonLocal3d",
            "mmcv.cnn.bricks.non_local.NonLocal3d",
            lambda layer, c, shape: _non_local(layer, c),
            "our mode, reduction, sub_sample (1x2x2) and scale; BN3d after conv_out",
            reference="mmcv",
        ),
    ),
    "scse": (
        Reference(
            "ChannelSpatialSqueezeExcitation",
            "fvcore.nn.squeeze_excitation.ChannelSpatialSqueezeExcitation",
            lambda layer, c, shape: _scse(layer, c),
            "is_3d=True, our width (combine='max' only)",
            reference="fvcore",
        ),
    ),
}

# The module each library is imported through, and what its absence is reported as.
_LIBRARIES = {"monai": "monai.networks.blocks", "mmcv": "mmcv.cnn", "fvcore": "fvcore.nn"}


def import_library(library):
    """torch, once `library` ("monai", "timm_3d", "mmcv", "fvcore") imports; else an error text."""
    if library == "timm_3d":
        timm_3d = import_timm("timm_3d")
        return (timm_3d.torch, None) if timm_3d is not None else (None, "timm_3d cannot load")
    try:
        importlib.import_module(_LIBRARIES[library])
    except Exception as error:  # noqa: BLE001 (any import failure is reported, not raised)
        return None, f"{library} cannot be imported: {type(error).__name__}: {error}"
    return sys.modules["torch"], None


def volume_module(entry, layer, shape):
    """The reference module of `entry` equivalent to our built 3-D `layer` at `shape`
    (NDHWC), or None and the reason."""
    try:
        path = entry.path(layer) if callable(entry.path) else entry.path
        return _class(path)(**entry.kwargs(layer, shape[-1], tuple(shape))), None
    except Exception as error:  # noqa: BLE001 (any argument the library cannot express)
        return None, " ".join(f"{type(error).__name__}: {error}".split())
