"""Bilinear (trilinear) resizing to the spatial size of a reference tensor, for decoders and heads."""

import keras

from keras_attention import ops as ka_ops


@keras.saving.register_keras_serializable(package="keras_attention")
class ResizeLike(keras.layers.Layer):
    """Resizes a feature map bilinearly to the height and width of a reference tensor.

    Volumes: 5-D `x` and reference are resized trilinearly to the reference's
    depth, height and width (PyTorch's `interpolate(mode="trilinear",
    align_corners=False)`).

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
        inputs: a list `[x, reference]` of 4-D (or 5-D) tensors; only the
            reference's spatial sizes are used.

    Output shape:
        `x`'s shape with the reference's height and width (and depth).

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
        size = ka_ops.spatial_shape(reference, self.data_format)
        return ka_ops.resize_linear(x, size, self.data_format)

    def compute_output_shape(self, input_shapes):
        shape, reference = (list(s) for s in input_shapes)
        for axis in ka_ops.spatial_axes(self.data_format, len(shape)):
            shape[axis] = reference[axis]
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": self.data_format})
        return config
