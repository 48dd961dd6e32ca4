"""Channel attention: gates that reweight channels from pooled statistics."""

from keras_attention.layers.channel.effective_squeeze_excitation import EffectiveSqueezeExcitation
from keras_attention.layers.channel.efficient_channel import EfficientChannelAttention
from keras_attention.layers.channel.frequency_channel import FrequencyChannelAttention
from keras_attention.layers.channel.gather_excite import GatherExcite
from keras_attention.layers.channel.global_context import GlobalContext
from keras_attention.layers.channel.selective_kernel import SelectiveKernel
from keras_attention.layers.channel.split_attention import SplitAttention
from keras_attention.layers.channel.squeeze_excitation import SqueezeExcitation
from keras_attention.layers.channel.style_recalibration import StyleRecalibration
