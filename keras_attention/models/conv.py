"""Keras's Conv2D and Conv3D, with a channels_first bias added on the channel axis on TensorFlow."""

import keras


class _ChannelsFirstBias:
    """Adds a channels_first convolution's bias as `bias + outputs`, not `outputs + bias`.

    Keras (3.15) adds the bias by `keras.ops.add(outputs, bias)` with the
    bias reshaped to (1, C, 1, ...). Its TensorFlow backend turns an add of a
    vector-shaped second operand into `tf.nn.bias_add` and guesses the data
    format from the first operand's shape: when the last spatial size equals
    C it picks NHWC and adds the bias along the width. Any CPU or GPU, 2-D or
    3-D; JAX and PyTorch are right. With the bias first Keras calls `tf.add`,
    which broadcasts by shape. channels_last keeps Keras's own call (its
    BiasAdd fuses with the convolution).
    """

    def call(self, inputs):
        if not self.use_bias or self.data_format == "channels_last":
            return super().call(inputs)
        outputs = self.convolution_op(inputs, self.kernel)
        bias = keras.ops.reshape(self.bias, (1, self.filters) + (1,) * self.rank)
        outputs = keras.ops.add(bias, outputs)
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="keras_attention")
class Conv2D(_ChannelsFirstBias, keras.layers.Conv2D):
    """`keras.layers.Conv2D`, right channels_first on TensorFlow at any width.

    The arguments, weights and outputs are Keras's; see `_ChannelsFirstBias`
    for what differs (only where Keras's bias lands on the wrong axis).
    """


@keras.saving.register_keras_serializable(package="keras_attention")
class Conv3D(_ChannelsFirstBias, keras.layers.Conv3D):
    """`keras.layers.Conv3D`, right channels_first on TensorFlow at any width.

    The arguments, weights and outputs are Keras's; see `_ChannelsFirstBias`
    for what differs (only where Keras's bias lands on the wrong axis).
    """
