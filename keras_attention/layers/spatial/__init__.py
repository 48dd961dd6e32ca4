"""Spatial attention: positions attend to positions (self-attention) or are resampled."""

from keras_attention.layers.spatial.attention_gate import AttentionGate
from keras_attention.layers.spatial.axial import AxialAttention
from keras_attention.layers.spatial.contextual_transformer import ContextualTransformer
from keras_attention.layers.spatial.large_kernel import LargeKernelAttention
from keras_attention.layers.spatial.non_local import NonLocalBlock
from keras_attention.layers.spatial.outlook import OutlookAttention
from keras_attention.layers.spatial.polarized import PolarizedSelfAttention
from keras_attention.layers.spatial.self_attention import SelfAttention2D
from keras_attention.layers.spatial.spatial_transformer import SpatialTransformer
