"""Short names -> layer classes, for `keras_attention.get("cbam", reduction=8)`."""

from keras_attention import layers

_LAYERS = {
    "se": layers.SqueezeExcitation,
    "eca": layers.EfficientChannelAttention,
    "sk": layers.SelectiveKernel,
    "self_attention": layers.SelfAttention2D,
    "non_local": layers.NonLocalBlock,
    "stn": layers.SpatialTransformer,
    "cbam": layers.CBAM,
    "channel_gate": layers.ChannelGate,
    "spatial_gate": layers.SpatialGate,
    "danet": layers.DualAttention,
    "position_attention": layers.PositionAttention,
    "channel_attention": layers.ChannelAttention,
    "ccnet": layers.CrissCrossAttention,
    "residual": layers.ResidualAttention,
}


def available():
    """The sorted short names that `get` accepts."""
    return sorted(_LAYERS)


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
