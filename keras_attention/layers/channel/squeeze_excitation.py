import keras

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class SqueezeExcitation(ImageAttentionLayer):
    """Squeeze-and-Excitation channel attention.

    Reference: Hu, Shen and Sun, "Squeeze-and-Excitation Networks", CVPR 2018
    (https://arxiv.org/abs/1709.01507).

    Squeeze: global average pooling gives one descriptor per channel. Excite: a
    bottleneck MLP `Dense(C / reduction, relu) -> Dense(C, sigmoid)` (both with
    biases) turns it into a gate in (0, 1) that rescales each channel. With
    C=256 and reduction=16 the layer has 8,464 parameters, as in the paper.

    Args:
        reduction: int, the bottleneck ratio r; the hidden layer has
            `max(1, C // reduction)` units. Defaults to 16.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the channel gate, shape
            `(batch, C)`.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = SqueezeExcitation(reduction=16)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    def __init__(self, reduction=16, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        self.reduction = reduction

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self.reduce = keras.layers.Dense(
            max(1, channels // self.reduction),
            activation="relu",
            dtype=self.dtype_policy,
            name="reduce",
        )
        self.reduce.build((None, channels))
        self.expand = keras.layers.Dense(
            channels, activation="sigmoid", dtype=self.dtype_policy, name="expand"
        )
        self.expand.build((None, self.reduce.units))
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        squeezed = ka_ops.spatial_mean(inputs, self.data_format)
        gate = self.expand(self.reduce(squeezed))
        outputs = inputs * ka_ops.expand_channels(gate, self.data_format)
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction})
        return config
