"""Bilinear resizing to the spatial size of a reference tensor, for the segmentation heads."""

import keras
from keras import ops

from keras_attention import ops as ka_ops


@keras.saving.register_keras_serializable(package="keras_attention")
class ResizeLike(keras.layers.Layer):
    """Resizes a feature map bilinearly to the height and width of a reference tensor.

    Segmentation heads use it to bring their logits back to the input image's
    resolution for any image size, including sizes that the backbone's stride
    does not divide and sizes unknown until run time (`Input((None, None, 3))`).
    `keras.layers.UpSampling2D(interpolation="bilinear")` cannot serve there:
    in Keras 3.15 it fails inside a TensorFlow graph (`fit`, `predict`) when
    the height or width is unknown. Sampling uses half-pixel centres, like
    `keras.ops.image.resize(..., interpolation="bilinear")` without antialiasing.

    Args:
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`); both inputs use it.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a list `[x, reference]` of 4-D tensors; only the reference's
            height and width are used.

    Output shape:
        `x`'s shape with the reference's height and width.

    Example:

    >>> features = keras.ops.ones((1, 4, 4, 8))
    >>> image = keras.ops.ones((1, 30, 28, 3))
    >>> ResizeLike()([features, image]).shape
    (1, 30, 28, 8)
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = ka_ops.standardize_data_format(data_format)

    def call(self, inputs):
        x, reference = inputs
        rows, columns = ka_ops.spatial_axes(self.data_format)
        height, width = ops.shape(reference)[rows], ops.shape(reference)[columns]
        return ka_ops.resize_linear(x, (height, width), self.data_format)

    def compute_output_shape(self, input_shapes):
        shape, reference = (list(s) for s in input_shapes)
        for axis in ka_ops.spatial_axes(self.data_format):
            shape[axis] = reference[axis]
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": self.data_format})
        return config
