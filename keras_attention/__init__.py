"""Attention mechanisms of image CNNs as serializable Keras 3 layers.

`keras_attention.layers` holds the layers (each one mechanism, registered for
`.keras` saving); `keras_attention.get(name, **kwargs)` builds one by its short
name and `keras_attention.available()` lists those names.
"""

__version__ = "0.1.0"

from keras_attention import layers
from keras_attention.layers import EfficientChannelAttention
from keras_attention.layers import SelectiveKernel
from keras_attention.layers import SqueezeExcitation
from keras_attention.registry import available
from keras_attention.registry import get
