import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_divides_channels
from keras_attention.layers.base import check_positive_int

# Added to the standard deviation (not the variance), as in the authors' code.
SGE_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="keras_attention")
class SpatialGroupEnhance(ImageAttentionLayer):
    """Spatial Group-wise Enhance (SGE): each channel group gates its positions.

    Reference: Li, Hu and Yang, "Spatial Group-wise Enhance: Improving
    Semantic Feature Learning in Convolutional Networks", 2019
    (https://arxiv.org/abs/1905.09646).

    The C channels are split into `groups` contiguous groups. In each group,
    every position's feature vector is dotted with the group's mean vector
    (global average pooling); the similarity map is normalised over the
    positions (minus its mean, divided by its standard deviation), scaled and
    shifted by a per-group weight and bias, and a sigmoid turns it into a
    gate that rescales the group's features at each position. The weight
    starts at 0 and the bias at 1, so at initialisation every gate is
    sigmoid(1). 2 * groups parameters (128 for the default 64 groups, at any
    C).

    As in the authors' released code (implus/PytorchInsight), which produced
    the paper's tables: the standard deviation is the unbiased one (divides by
    H*W - 1) and epsilon 1e-5 is added to it, not to the variance as the
    paper's formula reads.

    Volumes and clips: the group's mean vector and the normalisation of the
    similarity run over all D*H*W positions (the authors' code with every
    spatial axis pooled). Its unbiased standard deviation divides by
    D*H*W - 1, so a clip of D equal frames is normalised slightly
    differently from the image (by sqrt((H*W - 1) D / (D*H*W - 1))).

    Mixed precision: the group's mean descriptor, the similarity's
    normalisation (mean and variance over positions) and the affine logits run
    in float32; the sigmoid gate is cast back to the compute dtype.

    Args:
        groups: int >= 1 dividing C. Defaults to 64.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map with H * W > 1, or a 5-D volume or clip
            with D * H * W > 1.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the gates, one map per group:
            shape `(batch, H, W, groups)` (channels_last) or
            `(batch, groups, H, W)`; `(batch, D, H, W, groups)` or
            `(batch, groups, D, H, W)` for volumes and clips.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = SpatialGroupEnhance(groups=64)(x)
    >>> y.shape
    (None, None, None, 256)
    """

    spatial_ranks = (2, 3)

    def __init__(self, groups=64, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("groups", groups)
        self.groups = groups

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        check_divides_channels(self.__class__.__name__, "groups", self.groups, channels)
        self.weight = self.add_weight(shape=(self.groups,), initializer="zeros", name="weight")
        self.bias = self.add_weight(shape=(self.groups,), initializer="ones", name="bias")
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        shape = ops.shape(x)
        spatial = shape[1:-1]
        channels = x.shape[-1]
        positions = 1
        for size in spatial:
            positions = positions * size
        # The positions flattened to one axis (at most 4-D inside, for clips too).
        grouped = ops.reshape(x, (-1, positions, self.groups, channels // self.groups))
        # Similarity of each position to its group's mean vector, in float32:
        # the statistics below square it.
        grouped32 = ops.cast(grouped, "float32")
        centre = ops.mean(grouped32, axis=1, keepdims=True)
        similarity = ops.sum(grouped32 * centre, axis=-1)  # (batch, positions, groups)
        similarity = similarity - ops.mean(similarity, axis=1, keepdims=True)
        count = ops.cast(positions, "float32")
        variance = ops.sum(ops.square(similarity), axis=1, keepdims=True) / (count - 1.0)
        normed = similarity / (ops.sqrt(variance) + SGE_EPSILON)
        logits = normed * ops.cast(self.weight, "float32") + ops.cast(self.bias, "float32")
        gate = ops.cast(ops.sigmoid(logits), x.dtype)
        outputs = ops.reshape(grouped * gate[..., None], (-1, *spatial, channels))
        gate = ops.reshape(gate, (-1, *spatial, self.groups))
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        gate = ka_ops.from_channels_last(gate, self.data_format)
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups})
        return config
