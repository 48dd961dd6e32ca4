"""timm's ImageNet networks built from this package's layers, loading timm's checkpoints.

Read top-down: `convert.from_timm` is the entry point; `catalogue` gathers
the supported names from one module per timm family (`resnet`, ...), each
built from the shared `blocks`; `checkpoint` reads the weights and `assign`
copies them into the model's variables, one tensor to one variable.
"""

from keras_attention.models.timm.catalogue import timm_config
from keras_attention.models.timm.catalogue import timm_names
from keras_attention.models.timm.convert import from_timm
from keras_attention.models.timm.features import feature_info
from keras_attention.models.timm.features import pyramid_outputs
