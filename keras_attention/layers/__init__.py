"""The attention layers, one mechanism (family) per module."""

from keras_attention.layers.efficient_channel import EfficientChannelAttention
from keras_attention.layers.selective_kernel import SelectiveKernel
from keras_attention.layers.squeeze_excitation import SqueezeExcitation
