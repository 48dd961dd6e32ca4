"""Functional model builders: attention ResNets, Residual Attention Networks,
a spatial-transformer classifier, DANet/CCNet segmentation models and
Attention U-Net (2-D or 3-D), the non-local I3D/C2D video ResNets,
`inflate`: the I3D twin of a 2-D model, and `synchronize_batch_norm`: every
BatchNormalization over the global batch under data parallelism.

Every model is made of registered layers only, so it saves to `.keras` and
reloads in safe mode after `import keras_attention`.
"""

from keras_attention.models.attention_unet import AttentionUNet
from keras_attention.models.attention_unet import UNet
from keras_attention.models.inflate import inflate
from keras_attention.models.nonlocal_i3d import NonLocalResNet50
from keras_attention.models.nonlocal_i3d import NonLocalResNet101
from keras_attention.models.residual_attention_net import ResidualAttentionNet56
from keras_attention.models.residual_attention_net import ResidualAttentionNet92
from keras_attention.models.resize import ResizeLike
from keras_attention.models.resnet import ResNet18
from keras_attention.models.resnet import ResNet34
from keras_attention.models.resnet import ResNet50
from keras_attention.models.resnet import ResNet101
from keras_attention.models.segmentation import CCNet
from keras_attention.models.segmentation import DANet
from keras_attention.models.small_cnn import AttentionCNN
from keras_attention.models.spatial_transformer_classifier import SpatialTransformerClassifier
from keras_attention.models.synchronize import synchronize_batch_norm
from keras_attention.models.timm import feature_info
from keras_attention.models.timm import from_timm
from keras_attention.models.timm import pyramid_outputs
from keras_attention.models.timm import timm_config
from keras_attention.models.timm import timm_names
