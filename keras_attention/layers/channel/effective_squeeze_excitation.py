import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_choice

GATES = ("hard_sigmoid", "sigmoid")


@keras.saving.register_keras_serializable(package="keras_attention")
class EffectiveSqueezeExcitation(ImageAttentionLayer):
    """Effective Squeeze-Excitation (eSE): one full-width layer, hard-sigmoid gate.

    Reference: Lee and Park, "CenterMask: Real-Time Anchor-Free Instance
    Segmentation", CVPR 2020 (https://arxiv.org/abs/1911.06667).

    Global average pooling, then a single `Dense(C)` with bias (the 1x1
    convolution C -> C of VoVNetV2, with no bottleneck, so no channel
    information is lost), then a hard sigmoid `relu6(z + 3) / 6` that rescales
    each channel. timm's `EffectiveSEModule`. With C=256 it has 65,792
    parameters (256 * 256 + 256).

    Volumes and clips: the same layer takes 5-D inputs; the mean then runs over
    depth, height and width (the 1x1x1 convolution C -> C of a 3-D VoVNetV2).

    Mixed precision: its spatial means accumulate in float32
    (`keras_attention.ops.mean`); the 1x1 projection and the gate run in the
    compute dtype.

    Args:
        gate: `"hard_sigmoid"` (the paper's) or `"sigmoid"`. Defaults to
            `"hard_sigmoid"`.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the channel gate, shape
            `(batch, C)` (for volumes too).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = EffectiveSqueezeExcitation()(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, gate="hard_sigmoid", data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_choice("gate", gate, GATES)
        self.gate = gate

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self.fc = keras.layers.Dense(channels, dtype=self.dtype_policy, name="fc")
        self.fc.build((None, channels))
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        logits = self.fc(ka_ops.spatial_mean(inputs, self.data_format))
        gate = ops.hard_sigmoid(logits) if self.gate == "hard_sigmoid" else ops.sigmoid(logits)
        outputs = inputs * ka_ops.expand_channels(gate, self.data_format, len(inputs.shape))
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"gate": self.gate})
        return config
