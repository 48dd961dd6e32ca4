"""Short names -> layer classes, for `keras_attention.get("cbam", reduction=8)`.

One table per domain, matching the folders of `keras_attention.layers`: a new
mechanism adds one line to its domain's table.
"""

from keras_attention import layers

CHANNEL = {
    "se": layers.SqueezeExcitation,
    "eca": layers.EfficientChannelAttention,
    "sk": layers.SelectiveKernel,
    "ge": layers.GatherExcite,
    "ese": layers.EffectiveSqueezeExcitation,
    "srm": layers.StyleRecalibration,
    "fca": layers.FrequencyChannelAttention,
    "gc": layers.GlobalContext,
    "split_attention": layers.SplitAttention,
}

SPATIAL = {
    "self_attention": layers.SelfAttention2D,
    "non_local": layers.NonLocalBlock,
    "stn": layers.SpatialTransformer,
    "attention_gate": layers.AttentionGate,
    "lka": layers.LargeKernelAttention,
    "outlook": layers.OutlookAttention,
    "polarized": layers.PolarizedSelfAttention,
    "cot": layers.ContextualTransformer,
    "axial": layers.AxialAttention,
    "bot": layers.BottleneckSelfAttention,
    "halo": layers.HaloAttention,
    "lambda": layers.LambdaLayer,
    "a2": layers.DoubleAttention,
    "external": layers.ExternalAttention,
}

MIXED = {
    "cbam": layers.CBAM,
    "channel_gate": layers.ChannelGate,
    "spatial_gate": layers.SpatialGate,
    "danet": layers.DualAttention,
    "position_attention": layers.PositionAttention,
    "channel_attention": layers.ChannelAttention,
    "ccnet": layers.CrissCrossAttention,
    "residual": layers.ResidualAttention,
    "scse": layers.SpatialChannelSqueezeExcitation,
    "sge": layers.SpatialGroupEnhance,
    "shuffle": layers.ShuffleAttention,
    "ema": layers.EfficientMultiScaleAttention,
    "ela": layers.EfficientLocalAttention,
    "gam": layers.GlobalAttention,
    "coord": layers.CoordinateAttention,
    "bam": layers.BottleneckAttention,
    "triplet": layers.TripletAttention,
    "simam": layers.SimAM,
}

DOMAINS = {"channel": CHANNEL, "spatial": SPATIAL, "mixed": MIXED}
_LAYERS = {name: cls for table in DOMAINS.values() for name, cls in table.items()}


def available(domain=None):
    """The sorted short names that `get` accepts, optionally of one domain.

    Args:
        domain: None for every name, or one of "channel", "spatial", "mixed".
    """
    if domain is None:
        return sorted(_LAYERS)
    if domain not in DOMAINS:
        raise ValueError(
            f"`domain` must be None or one of {tuple(DOMAINS)}. Received: domain={domain!r}"
        )
    return sorted(DOMAINS[domain])


def get_class(name):
    """The layer class registered under the short name `name`."""
    if not isinstance(name, str) or name.lower() not in _LAYERS:
        raise ValueError(f"Unknown attention `name`: {name!r}. Available: {', '.join(available())}")
    return _LAYERS[name.lower()]


def get(name, **kwargs):
    """A new layer of the mechanism registered under `name`, built from `kwargs`.

    Example:

    >>> layer = keras_attention.get("se", reduction=8)
    """
    return get_class(name)(**kwargs)
