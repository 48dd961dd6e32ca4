"""What is measured: each layer's arguments, its shape family and the shape sets."""

import inspect
import math

import keras_attention

BASELINE = "conv1x1"
# timm's NonLocalAttn in the memory targets (--vs-timm).
TIMM_NON_LOCAL = "timm NonLocalAttn"
# What the harness itself costs: the call, the cast and sum of the loss and its gradient.
IDENTITY = "identity"
MIB = 2.0**20

# Short name -> (shape family, constructor kwargs at the benchmark shapes). Names not
# listed here still run, as "spatial" layers with their default arguments.
LAYER_SETTINGS = {
    "se": ("channel", {}),
    "eca": ("channel", {}),
    "sk": ("channel", {"groups": 32}),
    "cbam": ("channel", {}),
    "channel_gate": ("channel", {}),
    "spatial_gate": ("channel", {}),
    "self_attention": ("spatial", {}),
    "non_local": ("spatial", {"mode": "embedded_gaussian", "sub_sample": False}),
    "stn": ("spatial", {}),
    "danet": ("spatial", {}),
    "position_attention": ("spatial", {}),
    "channel_attention": ("spatial", {}),
    "ccnet": ("spatial", {"recurrence": 2}),
    "residual": ("spatial", {}),
    # Other branches' layers (used only once registered): channel attention and SK-like
    # convolutions on the channel shapes.
    "gc": ("channel", {}),
    "split_attention": ("channel", {}),
    "ge": ("channel", {}),
    "coord": ("channel", {}),
    "ese": ("channel", {}),
    # Layers that need the feature size or a block size dividing it: see `layer_kwargs`.
    "bot": ("spatial", {"num_heads": 4}),
    "halo": ("spatial", {"num_heads": 8}),
    "lambda": ("spatial", {}),
}


def layer_kwargs(name, shape):
    """Constructor kwargs of `name` at `shape` (NHWC): the table's, plus shape-bound ones."""
    kwargs = dict(LAYER_SETTINGS.get(name, (None, {}))[1])
    height, width = shape[1], shape[2]
    if name == "bot":
        kwargs["feature_size"] = (height, width)
    if name == "axial":
        kwargs["span"] = (height, width)
    if name == "halo":
        # timm's HaloAttn needs the block size to divide H and W (8 divides neither 28 nor 56).
        block = next(b for b in (8, 7, 4, 3, 2, 1) if height % b == 0 and width % b == 0)
        kwargs.update(block_size=block, halo_size=max(1, block // 2))
    return kwargs


# --volumes: the 3-D forms at a clip (batch, frames, H, W, C) and a volume (batch, D, H, W, C),
# and the cube sides D = H = W of the non-local vs criss-cross memory growth.
VOLUME_SHAPES = {
    "volumes": {"clip": (2, 8, 28, 28, 256), "volume": (1, 32, 32, 32, 64)},
    "volume_growth": [8, 12, 16, 24, 32],
    "volume_channels": 64,
}

# --segmentation: the papers' training crop (512x512, batch 2 here: theirs is 8 on 4 GPUs);
# 3 rounds, as a ResNet-101 step at output stride 8 takes a minute on a 2-core CPU.
SEGMENTATION = {"seg_size": 512, "seg_batch": 2, "seg_repeats": 3}

# --shapes: the paper-scale shapes, or tiny ones for smoke tests.
SHAPES = {
    "standard": {
        "channel": [(32, 56, 56, 256)],
        "spatial": [(8, 28, 28, 512), (1, 56, 56, 512)],
        "target": (1, 97, 97, 512),
        "growth": [14, 28, 56, 97],
        "model_size": 224,
        "model_batch": 16,
        "warmup": 2,
        "repeats": 5,
        "model_repeats": 9,
        "models": "none,scale,se,eca,cbam,sk",
        "layer_memory": True,
        **SEGMENTATION,
        **VOLUME_SHAPES,
    },
    # The shapes of the issue's ours-vs-timm table: a quarter of "standard"'s channel batch.
    "timm": {
        "channel": [(8, 56, 56, 256)],
        "spatial": [(4, 28, 28, 512)],
        "target": (1, 97, 97, 512),
        "growth": [56, 97],
        "model_size": 224,
        "model_batch": 16,
        "warmup": 2,
        "repeats": 7,
        "model_repeats": 9,
        "models": "none,scale,se,eca,cbam,sk",
        "layer_memory": True,
        **SEGMENTATION,
        **VOLUME_SHAPES,
    },
    "small": {
        # 128 channels: the default groups of SGE (64) and shuffle attention (2 x 64) divide it.
        "channel": [(2, 8, 8, 128)],
        "spatial": [(1, 8, 8, 32)],
        "target": (1, 9, 9, 32),
        "growth": [5, 9],
        "model_size": 32,
        "model_batch": 2,
        "warmup": 1,
        "repeats": 2,
        "model_repeats": 1,
        "models": "none,se",
        "seg_size": 64,
        "seg_batch": 1,
        "seg_repeats": 1,
        # Tiny maps say nothing about memory, and each probe process re-traces every layer.
        "layer_memory": False,
        "volumes": {"clip": (2, 2, 6, 5, 32), "volume": (1, 4, 4, 4, 16)},
        "volume_growth": [3, 4],
        "volume_channels": 16,
    },
}


# Layers that take more than one input map (AttentionGate: [x, g]) have no
# single-input case here; name them in --layers to be told so.
MULTI_INPUT = {"attention_gate"}


def selected_layers(spec):
    available = keras_attention.available()
    if spec == "all":
        return [name for name in available if name not in MULTI_INPUT]
    if spec == "none":
        return []
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise ValueError(f"Unknown --layers {unknown}. Available: {', '.join(available)}")
    if set(names) & MULTI_INPUT:
        raise ValueError(f"--layers {sorted(set(names) & MULTI_INPUT)} take several inputs")
    return names


def layer_family(name):
    """'channel' (gates, timed at the channel shape) or 'spatial' (attention over positions)."""
    if name in LAYER_SETTINGS:
        return LAYER_SETTINGS[name][0]
    return "spatial" if name in keras_attention.available("spatial") else "channel"


# Halo's blocks must tile the map (no padding, as in timm): in the growth table a size
# that its block does not divide (97 is prime) is measured at the multiple of the block
# below it (97 -> 96), so that the block, and with it the cost per position, stays the
# same at every size. The table names the sizes measured; the exponent uses them.
GROWTH_BLOCK = {"halo": 8}


def growth_size(name, size):
    """The H = W at which `name` is measured for the nominal growth size `size`."""
    block = GROWTH_BLOCK.get(name)
    if block and size >= block:
        return size - size % block
    return size


# Arguments of the 3-D forms that differ from LAYER_SETTINGS'. Non-local on clips and
# volumes pools its keys 1x2x2 (the paper's video models): without it a 32^3 volume's
# attention matrix alone is 32768^2 floats (4 GiB).
# scSE combines its two gates by a maximum, as its only 3-D reference (fvcore) does: the
# cost is the same as the default sum's.
VOLUME_SETTINGS = {
    "non_local": {"sub_sample": True},
    "scse": {"combine": "max"},
}


# Grouped layers whose channels must be a multiple of groups * this: the 64-channel
# volume takes fewer groups than their defaults (SGE, shuffle: 64; SK here: 32) on the
# tiny shapes, and shuffle's 2 x 64 does not divide 64. The table shows the groups used.
GROUPED = {"sge": 1, "shuffle": 2, "sk": 1}


def volume_kwargs(name, channels=None):
    """Constructor kwargs of `name`'s 3-D form: LAYER_SETTINGS' with VOLUME_SETTINGS' on top,
    and, given `channels`, a grouped layer's groups halved until the channels allow them."""
    kwargs = dict(LAYER_SETTINGS.get(name, (None, {}))[1])
    kwargs.update(VOLUME_SETTINGS.get(name, {}))
    if channels and name in GROUPED:
        default = inspect.signature(keras_attention.registry.get_class(name)).parameters["groups"]
        groups = kwargs.get("groups", default.default)
        while groups > 1 and channels % (groups * GROUPED[name]):
            groups //= 2
        if groups != kwargs.get("groups", default.default):
            kwargs["groups"] = groups
    return kwargs


# Layers whose attention weighs every (query, key) pair of positions; non-local's
# sub-sampling pools its keys 2x2 ("same" padding; 1x2x2 on clips and volumes).
PAIRWISE = {"self_attention", "position_attention", "danet", "non_local"}


def attention_gib(name, kwargs, shape):
    """GiB of the float32 (query, key) attention matrix of `name` at `shape` (channels last),
    or 0 for a layer without one. Such layers grow quadratically in the positions: above
    `--max-attention-gib` their cases are not run, and the tables say so."""
    if name not in PAIRWISE:
        return 0.0
    spatial = shape[1:-1]
    queries = keys = math.prod(spatial)
    if name == "non_local" and kwargs.get("sub_sample", True):
        keys = queries // (spatial[-2] * spatial[-1]) * -(-spatial[-2] // 2) * -(-spatial[-1] // 2)
    return shape[0] * queries * keys * 4 / 2.0**30


def too_large(name, kwargs, shape, max_gib):
    """Why `name` is not run at `shape` (its attention matrix is over `max_gib`), or None."""
    gib = attention_gib(name, kwargs, shape)
    if gib <= max_gib:
        return None
    return (
        f"not run: its float32 attention matrix alone would take {gib:.1f} GiB "
        f"(--max-attention-gib {max_gib:g})"
    )


def has_volume_form(name):
    """Whether the class registered as `name` takes 5-D inputs (3 in its `spatial_ranks`)."""
    return 3 in keras_attention.registry.get_class(name).spatial_ranks


def no_volume_reason(name):
    return keras_attention.registry.get_class(name).no_volume_reason
