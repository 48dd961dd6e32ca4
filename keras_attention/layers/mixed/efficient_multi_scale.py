import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_divides_channels
from keras_attention.layers.base import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class EfficientMultiScaleAttention(ImageAttentionLayer):
    """Efficient Multi-Scale Attention (EMA): two branches per channel group, crossed.

    Reference: Ouyang, He, Zhang, Hu, Huang, Luo and Guo, "Efficient
    Multi-Scale Attention Module with Cross-Spatial Learning", ICASSP 2023
    (https://arxiv.org/abs/2305.13563).

    The C channels are split into `groups` groups of m = C / groups channels
    and each group is processed as its own sample, with weights shared by
    all groups (the authors' code, YOLOonMe/EMA-attention-module, folds the
    groups into the batch). 1x1 branch: average pooling along W and along H,
    both strips through one 1x1 conv (m -> m, bias), sigmoids, the group
    rescaled by both and GroupNorm'ed with one channel a group. 3x3 branch: a
    3x3 conv (m -> m, bias). Cross-spatial learning: the softmax over the m
    channels of each branch's global average multiplies the other branch's
    map (a dot product over channels at every pixel); the two maps are summed
    and a sigmoid gives one weight a pixel for the whole group. With C=256
    and the default 32 groups: 672 parameters (72 + 584 + 16).

    Mixed precision: the means accumulate in float32
    (`keras_attention.ops.mean`), the two softmaxes over channels run in
    float32 and GroupNormalization's statistics are float32 (Keras's); the
    convolutions and the gate run in the compute dtype.

    Args:
        groups: int >= 1 dividing C (the code's `factor`). Defaults to 32.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the spatial gate of each
            group, shape `(batch, H, W, groups)` (channels_last) or
            `(batch, groups, H, W)`.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = EfficientMultiScaleAttention(groups=32)(x)
    >>> y.shape
    (None, None, None, 256)
    """

    # Not a limit of the mechanism: the volume form (a depth strip beside the
    # H and W strips, a 3x3x3 branch, groups folded into the batch without a
    # 6-D tensor) is planned, not written.
    no_volume_reason = (
        "its volume form (three pooled strips and a 3x3x3 branch) is not written yet; it is planned"
    )

    def __init__(self, groups=32, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("groups", groups)
        self.groups = groups

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        check_divides_channels(self.__class__.__name__, "groups", self.groups, channels)
        width = channels // self.groups
        # The convolutions run channels_last on the groups folded into the batch.
        common = {"data_format": "channels_last", "dtype": self.dtype_policy}
        self.pointwise = keras.layers.Conv2D(width, 1, name="pointwise", **common)
        self.pointwise.build((None, None, 1, width))
        self.local = keras.layers.Conv2D(width, 3, padding="same", name="local", **common)
        self.local.build((None, None, None, width))
        self.norm_gamma = self.add_weight(shape=(width,), initializer="ones", name="norm_gamma")
        self.norm_beta = self.add_weight(shape=(width,), initializer="zeros", name="norm_beta")
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        shape = ops.shape(x)
        height, width, channels = shape[1], shape[2], x.shape[-1]
        size = channels // self.groups
        # (batch * groups, H, W, m): each group a sample, as in the authors' code.
        grouped = ops.reshape(x, (-1, height, width, self.groups, size))
        grouped = ops.reshape(ops.transpose(grouped, (0, 3, 1, 2, 4)), (-1, height, width, size))
        along_h = ka_ops.mean(grouped, 2, keepdims=True)  # (N, H, 1, m)
        along_w = ops.transpose(ka_ops.mean(grouped, 1, keepdims=True), (0, 2, 1, 3))
        strips = self.pointwise(ops.concatenate([along_h, along_w], axis=1))
        gate_h = ops.sigmoid(strips[:, :height])
        gate_w = ops.transpose(ops.sigmoid(strips[:, height:]), (0, 2, 1, 3))
        wide = ka_ops.group_norm(grouped * gate_h * gate_w, size, self.norm_gamma, self.norm_beta)
        local = self.local(grouped)

        def channel_softmax(t):
            return ka_ops.softmax_float32(ka_ops.mean(t, (1, 2), keepdims=True), axis=-1)

        logits = ops.sum(channel_softmax(wide) * local + channel_softmax(local) * wide, axis=-1)
        gate = ops.sigmoid(logits)  # (N, H, W)
        outputs = grouped * gate[..., None]
        outputs = ops.reshape(outputs, (-1, self.groups, height, width, size))
        outputs = ops.reshape(
            ops.transpose(outputs, (0, 2, 3, 1, 4)), (-1, height, width, channels)
        )
        gate = ops.transpose(ops.reshape(gate, (-1, self.groups, height, width)), (0, 2, 3, 1))
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        gate = ka_ops.from_channels_last(gate, self.data_format)
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups})
        return config
