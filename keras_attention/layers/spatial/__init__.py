"""Spatial attention: positions attend to positions (self-attention) or are resampled."""

from keras_attention.layers.spatial.attention_gate import AttentionGate
from keras_attention.layers.spatial.axial import AxialAttention
from keras_attention.layers.spatial.bottleneck_self_attention import BottleneckSelfAttention
from keras_attention.layers.spatial.contextual_transformer import ContextualTransformer
from keras_attention.layers.spatial.double_attention import DoubleAttention
from keras_attention.layers.spatial.external_attention import ExternalAttention
from keras_attention.layers.spatial.halo_attention import HaloAttention
from keras_attention.layers.spatial.lambda_layer import LambdaLayer
from keras_attention.layers.spatial.large_kernel import LargeKernelAttention
from keras_attention.layers.spatial.non_local import NonLocalBlock
from keras_attention.layers.spatial.outlook import OutlookAttention
from keras_attention.layers.spatial.polarized import PolarizedSelfAttention
from keras_attention.layers.spatial.self_attention import SelfAttention2D
from keras_attention.layers.spatial.spatial_transformer import SpatialTransformer
