"""The attention layers, one mechanism (family) per module, grouped by domain.

`channel/` reweights channels, `spatial/` relates positions, `mixed/` does both.
Every public class is re-exported here: `keras_attention.layers.X` is the import
path whatever folder X lives in, and registered names ("keras_attention>X") do
not depend on the folder, so saved files load after a file moves.
"""

from keras_attention.layers.channel import EffectiveSqueezeExcitation
from keras_attention.layers.channel import EfficientChannelAttention
from keras_attention.layers.channel import FrequencyChannelAttention
from keras_attention.layers.channel import GatherExcite
from keras_attention.layers.channel import GlobalContext
from keras_attention.layers.channel import SelectiveKernel
from keras_attention.layers.channel import SplitAttention
from keras_attention.layers.channel import SqueezeExcitation
from keras_attention.layers.channel import StyleRecalibration
from keras_attention.layers.mixed import CBAM
from keras_attention.layers.mixed import BottleneckAttention
from keras_attention.layers.mixed import ChannelAttention
from keras_attention.layers.mixed import ChannelGate
from keras_attention.layers.mixed import CoordinateAttention
from keras_attention.layers.mixed import CrissCrossAttention
from keras_attention.layers.mixed import DualAttention
from keras_attention.layers.mixed import EfficientLocalAttention
from keras_attention.layers.mixed import EfficientMultiScaleAttention
from keras_attention.layers.mixed import GlobalAttention
from keras_attention.layers.mixed import PositionAttention
from keras_attention.layers.mixed import ResidualAttention
from keras_attention.layers.mixed import ShuffleAttention
from keras_attention.layers.mixed import SimAM
from keras_attention.layers.mixed import SpatialChannelSqueezeExcitation
from keras_attention.layers.mixed import SpatialGate
from keras_attention.layers.mixed import SpatialGroupEnhance
from keras_attention.layers.mixed import TripletAttention
from keras_attention.layers.spatial import AttentionGate
from keras_attention.layers.spatial import AxialAttention
from keras_attention.layers.spatial import BottleneckSelfAttention
from keras_attention.layers.spatial import ContextualTransformer
from keras_attention.layers.spatial import DoubleAttention
from keras_attention.layers.spatial import ExternalAttention
from keras_attention.layers.spatial import HaloAttention
from keras_attention.layers.spatial import LambdaLayer
from keras_attention.layers.spatial import LargeKernelAttention
from keras_attention.layers.spatial import NonLocalBlock
from keras_attention.layers.spatial import OutlookAttention
from keras_attention.layers.spatial import PolarizedSelfAttention
from keras_attention.layers.spatial import SelfAttention2D
from keras_attention.layers.spatial import SpatialTransformer
