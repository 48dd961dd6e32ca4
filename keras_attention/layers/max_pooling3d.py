"""Keras's 3-D max pooling computed by 2-D max pools, for the volume forms of the layers."""

import keras

from keras_attention import ops as ka_ops


@keras.saving.register_keras_serializable(package="keras_attention")
class MaxPooling3D(keras.layers.MaxPooling3D):
    """`keras.layers.MaxPooling3D` with the same arguments and outputs, by 2-D max pools.

    Computed by `keras_attention.ops.max_pool`: the height-width pool of every
    frame, then the depth pool, both 2-D max pools. LiteRT has a builtin for
    those and none for `MaxPool3D`; TensorFlow's CPU runs them in float16,
    where it has no `MaxPool3D` kernel.
    """

    def call(self, inputs):
        return ka_ops.max_pool(
            inputs,
            self.pool_size,
            strides=self.strides,
            padding=self.padding,
            data_format=self.data_format,
        )
