"""The 3-D depthwise convolution that Keras lacks, for the volume forms of the layers."""

import keras

from keras_attention import ops as ka_ops


def _triple(name, value):
    """An int or a triple of positive ints -> the triple; ValueError naming `name` otherwise."""
    triple = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(triple) != 3 or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in triple
    ):
        raise ValueError(
            f"`{name}` must be a positive int or a triple of them. Received: {name}={value!r}"
        )
    return triple


@keras.saving.register_keras_serializable(package="keras_attention")
class DepthwiseConv3D(keras.layers.Layer):
    """A depthwise 3-D convolution of channels-last volumes ("same" padding, depth stride 1).

    The volume form of `keras.layers.DepthwiseConv2D` (depth multiplier 1):
    each channel is convolved with its own `kd x kh x kw` kernel. Its kernel,
    `(kd, kh, kw, C, 1)`, is `DepthwiseConv2D`'s `(kh, kw, C, 1)` with a
    leading depth axis, so a layer's 2-D weights inflate onto its 3-D form by
    path. Computed by `keras_attention.ops.depthwise_conv` (2-D depthwise
    convolutions summed over the depth taps: builtin kernels on every backend
    and in TFLite).

    Args:
        kernel_size: int or (kd, kh, kw).
        strides: int or (1, sh, sw): the depth stride must be 1. Defaults to 1.
        dilation_rate: int or (dd, dh, dw). Defaults to 1.
        use_bias: bool. Defaults to True.
        kernel_initializer, bias_initializer: Keras initializers.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch, D, H, W, C)`.

    Output shape:
        `(batch, D, H / sh, W / sw, C)` (rounded up).
    """

    def __init__(
        self,
        kernel_size,
        strides=1,
        dilation_rate=1,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = _triple("kernel_size", kernel_size)
        self.strides = _triple("strides", strides)
        if self.strides[0] != 1:
            raise ValueError(f"`strides` in depth must be 1. Received: strides={strides!r}")
        self.dilation_rate = _triple("dilation_rate", dilation_rate)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(ndim=5)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, channels, 1),
            initializer=self.kernel_initializer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(channels,), initializer=self.bias_initializer
            )

    def call(self, inputs):
        outputs = ka_ops.depthwise_conv(
            inputs, self.kernel, strides=self.strides, dilation_rate=self.dilation_rate
        )
        if self.use_bias:
            outputs = outputs + keras.ops.cast(self.bias, outputs.dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        batch, depth, height, width, channels = input_shape
        _, sh, sw = self.strides

        def strided(n, s):
            return None if n is None else -(-n // s)

        return (batch, depth, strided(height, sh), strided(width, sw), channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "dilation_rate": self.dilation_rate,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
