"""Attention mechanisms of image CNNs as serializable Keras 3 layers.

`keras_attention.layers` holds the layers (each one mechanism, registered for
`.keras` saving); `keras_attention.get(name, **kwargs)` builds one by its short
name and `keras_attention.available()` lists those names.
"""

__version__ = "0.2.0"

from keras_attention import layers
from keras_attention import models
from keras_attention import registry
from keras_attention.layers import CBAM
from keras_attention.layers import AttentionGate
from keras_attention.layers import AxialAttention
from keras_attention.layers import BottleneckAttention
from keras_attention.layers import BottleneckSelfAttention
from keras_attention.layers import ChannelAttention
from keras_attention.layers import ChannelGate
from keras_attention.layers import ContextualTransformer
from keras_attention.layers import CoordinateAttention
from keras_attention.layers import CrissCrossAttention
from keras_attention.layers import DoubleAttention
from keras_attention.layers import DualAttention
from keras_attention.layers import EffectiveSqueezeExcitation
from keras_attention.layers import EfficientChannelAttention
from keras_attention.layers import EfficientLocalAttention
from keras_attention.layers import EfficientMultiScaleAttention
from keras_attention.layers import ExternalAttention
from keras_attention.layers import FrequencyChannelAttention
from keras_attention.layers import GatherExcite
from keras_attention.layers import GlobalAttention
from keras_attention.layers import GlobalContext
from keras_attention.layers import HaloAttention
from keras_attention.layers import LambdaLayer
from keras_attention.layers import LargeKernelAttention
from keras_attention.layers import NonLocalBlock
from keras_attention.layers import OutlookAttention
from keras_attention.layers import PolarizedSelfAttention
from keras_attention.layers import PositionAttention
from keras_attention.layers import ResidualAttention
from keras_attention.layers import SelectiveKernel
from keras_attention.layers import SelfAttention2D
from keras_attention.layers import ShuffleAttention
from keras_attention.layers import SimAM
from keras_attention.layers import SpatialChannelSqueezeExcitation
from keras_attention.layers import SpatialGate
from keras_attention.layers import SpatialGroupEnhance
from keras_attention.layers import SpatialTransformer
from keras_attention.layers import SplitAttention
from keras_attention.layers import SqueezeExcitation
from keras_attention.layers import StyleRecalibration
from keras_attention.layers import TripletAttention
from keras_attention.registry import available
from keras_attention.registry import get
