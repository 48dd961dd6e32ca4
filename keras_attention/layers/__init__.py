"""The attention layers, one mechanism (family) per module."""

from keras_attention.layers.cbam import CBAM
from keras_attention.layers.cbam import ChannelGate
from keras_attention.layers.cbam import SpatialGate
from keras_attention.layers.criss_cross import CrissCrossAttention
from keras_attention.layers.dual_attention import ChannelAttention
from keras_attention.layers.dual_attention import DualAttention
from keras_attention.layers.dual_attention import PositionAttention
from keras_attention.layers.efficient_channel import EfficientChannelAttention
from keras_attention.layers.non_local import NonLocalBlock
from keras_attention.layers.residual_attention import ResidualAttention
from keras_attention.layers.selective_kernel import SelectiveKernel
from keras_attention.layers.self_attention import SelfAttention2D
from keras_attention.layers.spatial_transformer import SpatialTransformer
from keras_attention.layers.squeeze_excitation import SqueezeExcitation
