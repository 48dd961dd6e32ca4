import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_number


@keras.saving.register_keras_serializable(package="keras_attention")
class SimAM(ImageAttentionLayer):
    """SimAM: parameter-free attention from each neuron's minimal energy.

    Reference: Yang, Zhang, Li and Xie, "SimAM: A Simple, Parameter-Free
    Attention Module for Convolutional Neural Networks", ICML 2021
    (http://proceedings.mlr.press/v139/yang21o.html).

    For every channel, with `mu` the spatial mean and
    `var = sum((x - mu)^2) / (n - 1)` over its n = H*W positions (n = D*H*W
    in a volume or clip: the paper's formula over every position of the
    channel), each position gets the inverse
    energy `e = (x - mu)^2 / (4 * (var + e_lambda)) + 0.5`, and the output is
    `x * sigmoid(e)`: positions that stand out from their channel are kept
    more. There are no weights. As in the authors' code, the variance divides
    by `n - 1`; on a 1x1 map (where that is 0 and their code gives NaN) this
    layer divides by 1 instead, which changes nothing else since the squared
    deviations are then 0. The energy is computed in float32 under mixed
    precision (the sum of squares overflows float16).

    Volumes and clips: the same energy over the D*H*W positions of each
    channel. A clip whose D frames all repeat one image has the image's mean
    and squared deviations, but its unbiased variance divides D times their
    sum by D*H*W - 1, not by D*(H*W - 1): each frame's gates differ slightly
    from the image's (an inflated 2-D network is not exactly unchanged).

    Args:
        e_lambda: positive float, the regulariser lambda. Defaults to 1e-4.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the gate `sigmoid(e)`, the
            input's shape (`(batch, D, H, W, C)` for a channels_last clip).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = SimAM()(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, e_lambda=1e-4, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_number("e_lambda", e_lambda, positive=True)
        self.e_lambda = e_lambda

    def build(self, input_shape):
        self._input_channels(input_shape)
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        axes = ka_ops.spatial_axes(self.data_format, len(inputs.shape))
        x = ops.cast(inputs, "float32")
        shape = ops.shape(x)
        count = 1
        for axis in axes:
            count = count * shape[axis]
        count = ops.cast(count, "float32")
        squared = ops.square(x - ops.mean(x, axis=axes, keepdims=True))
        variance = ops.sum(squared, axis=axes, keepdims=True) / ops.maximum(count - 1.0, 1.0)
        energy = squared / (4.0 * (variance + self.e_lambda)) + 0.5
        gate = ops.cast(ops.sigmoid(energy), inputs.dtype)
        return self._outputs(inputs * gate, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"e_lambda": self.e_lambda})
        return config
