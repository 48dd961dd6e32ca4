"""Mixed attention: channel and spatial attention combined in one block."""

from keras_attention.layers.mixed.bottleneck_attention import BottleneckAttention
from keras_attention.layers.mixed.cbam import CBAM
from keras_attention.layers.mixed.cbam import ChannelGate
from keras_attention.layers.mixed.cbam import SpatialGate
from keras_attention.layers.mixed.coordinate_attention import CoordinateAttention
from keras_attention.layers.mixed.criss_cross import CrissCrossAttention
from keras_attention.layers.mixed.dual_attention import ChannelAttention
from keras_attention.layers.mixed.dual_attention import DualAttention
from keras_attention.layers.mixed.dual_attention import PositionAttention
from keras_attention.layers.mixed.efficient_local import EfficientLocalAttention
from keras_attention.layers.mixed.efficient_multi_scale import EfficientMultiScaleAttention
from keras_attention.layers.mixed.global_attention import GlobalAttention
from keras_attention.layers.mixed.residual_attention import ResidualAttention
from keras_attention.layers.mixed.shuffle_attention import ShuffleAttention
from keras_attention.layers.mixed.simam import SimAM
from keras_attention.layers.mixed.spatial_channel_squeeze_excitation import (
    SpatialChannelSqueezeExcitation,
)
from keras_attention.layers.mixed.spatial_group_enhance import SpatialGroupEnhance
from keras_attention.layers.mixed.triplet_attention import TripletAttention
