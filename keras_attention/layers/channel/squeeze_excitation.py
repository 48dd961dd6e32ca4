import keras

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_choice
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.channel_mlp import channel_mlp

GATES = ("sigmoid", "hard_sigmoid")


def check_activation(name, value):
    """Raises a ValueError naming `name` unless `value` is a Keras activation name."""
    try:
        valid = isinstance(value, str) and keras.activations.get(value) is not None
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise ValueError(
            f"`{name}` must be the name of a Keras activation. Received: {name}={value!r}"
        )


@keras.saving.register_keras_serializable(package="keras_attention")
class SqueezeExcitation(ImageAttentionLayer):
    """Squeeze-and-Excitation channel attention.

    Reference: Hu, Shen and Sun, "Squeeze-and-Excitation Networks", CVPR 2018
    (https://arxiv.org/abs/1709.01507).

    Squeeze: global average pooling gives one descriptor per channel. Excite: a
    bottleneck MLP `Dense(C / reduction, relu) -> Dense(C, sigmoid)` (both with
    biases) turns it into a gate in (0, 1) that rescales each channel. With
    C=256 and reduction=16 the layer has 8,464 parameters, as in the paper.

    Mixed precision: its spatial means accumulate in float32
    (`keras_attention.ops.mean`); the MLP and the sigmoid gate run in the
    compute dtype.

    Args:
        reduction: int, the bottleneck ratio r; the hidden layer has
            `max(1, C // reduction)` units. Defaults to 16.
        units: None or int, the hidden width itself; it overrides
            `reduction` (e.g. timm's widths, rounded to a multiple of 8).
            Defaults to None.
        activation: str, the hidden layer's activation, any Keras activation
            name ("relu", "swish", "hard_swish", ...). Defaults to "relu".
        gate: "sigmoid" or "hard_sigmoid" (`relu6(x + 3) / 6`, MobileNetV3's
            gate). Defaults to "sigmoid".
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the channel gate, shape
            `(batch, C)`.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)` (MONAI's
        `ChannelSELayer(spatial_dims=3)`).

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = SqueezeExcitation(reduction=16)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(
        self,
        reduction=16,
        units=None,
        activation="relu",
        gate="sigmoid",
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        check_positive_int("units", units, allow_none=True)
        check_activation("activation", activation)
        check_choice("gate", gate, GATES)
        self.reduction = reduction
        self.units = units
        self.activation = activation
        self.gate = gate

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        units = self.units or max(1, channels // self.reduction)
        self.reduce, self.expand = channel_mlp(
            channels,
            units,
            ("reduce", "expand"),
            self.dtype_policy,
            activation=self.activation,
            gate=self.gate,
        )
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        squeezed = ka_ops.spatial_mean(inputs, self.data_format)
        gate = self.expand(self.reduce(squeezed))
        outputs = inputs * ka_ops.expand_channels(gate, self.data_format, len(inputs.shape))
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "units": self.units,
                "activation": self.activation,
                "gate": self.gate,
            }
        )
        return config
