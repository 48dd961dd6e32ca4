"""Attention mechanisms of image CNNs as serializable Keras 3 layers.

`keras_attention.layers` holds the layers (each one mechanism, registered for
`.keras` saving); `keras_attention.get(name, **kwargs)` builds one by its short
name and `keras_attention.available()` lists those names.
"""

__version__ = "0.1.0"

from keras_attention import layers, models
from keras_attention.layers import (
    CBAM,
    ChannelAttention,
    ChannelGate,
    CrissCrossAttention,
    DualAttention,
    EfficientChannelAttention,
    NonLocalBlock,
    PositionAttention,
    ResidualAttention,
    SelectiveKernel,
    SelfAttention2D,
    SpatialGate,
    SpatialTransformer,
    SqueezeExcitation,
)
from keras_attention.registry import available, get
