import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_divides_channels
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import conv
from keras_attention.layers.base import pointwise_conv


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

    Volumes and clips: three pooled strips. Each group is averaged into D
    strips (one vector a frame, over H and W), H strips (over D and W) and W
    strips (over D and H); the D + H + W vectors go through the shared 1x1x1
    conv, and three sigmoid gates rescale the group before its GroupNorm. The
    3x3 branch is a 3x3x3 conv, and the cross-spatial learning runs over the
    D * H * W positions (one weight a voxel for the whole group). The
    sublayers are the 2-D form's, in the same order, with kernels of one more
    axis (C=256, 32 groups: 72 + 1,736 + 16 = 1,824 parameters), so 2-D
    weights inflate onto the 3-D form by path. On a boring clip (every frame
    one image) with inflated weights each frame gets the image's output, up
    to GroupNorm's epsilon: the depth strips all equal the group's global
    mean, so the depth gate is one positive scale a channel, which the
    one-channel GroupNorm divides out. The groups are folded into the batch
    through a (batch, positions, groups, m) view, never a 6-D tensor (TFLite
    slices and transposes take at most 5).

    Mixed precision: the means accumulate in float32
    (`keras_attention.ops.mean`), the two softmaxes over channels run in
    float32 and GroupNorm's statistics are float32
    (`keras_attention.ops.group_norm`); the convolutions and the gate run in
    the compute dtype.

    Args:
        groups: int >= 1 dividing C (the code's `factor`). Defaults to 32.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the spatial gate of each
            group, shape `(batch, H, W, groups)` (channels_last) or
            `(batch, groups, H, W)`; for volumes and clips
            `(batch, D, H, W, groups)` or `(batch, groups, D, H, W)`.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input: `(batch, H, W, C)`, or `(batch, D, H, W, C)` for
        volumes and clips (channels after the batch for channels_first).

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = EfficientMultiScaleAttention(groups=32)(x)
    >>> y.shape
    (None, None, None, 256)
    >>> clip = keras.Input((None, None, None, 64))
    >>> EfficientMultiScaleAttention(groups=8)(clip).shape
    (None, None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, groups=32, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("groups", groups)
        self.groups = groups

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        check_divides_channels(self.__class__.__name__, "groups", self.groups, channels)
        width = channels // self.groups
        rank, dtype = self.spatial_rank, self.dtype_policy
        # The convolutions run channels_last on the groups folded into the batch.
        self.pointwise = pointwise_conv("pointwise", width, width, dtype, rank=rank)
        self.local = conv(rank, "local", width, 3, width, dtype, padding="same")
        self.norm_gamma = self.add_weight(shape=(width,), initializer="ones", name="norm_gamma")
        self.norm_beta = self.add_weight(shape=(width,), initializer="zeros", name="norm_beta")
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        spatial = tuple(ops.shape(x)[1:-1])
        rank, channels = len(spatial), x.shape[-1]
        size = channels // self.groups
        positions = 1
        for length in spatial:
            positions = positions * length
        # (batch * groups, *spatial, m): each group a sample, as in the authors'
        # code, through a 4-D (batch, positions, groups, m) view.
        grouped = ops.reshape(x, (-1, positions, self.groups, size))
        grouped = ops.reshape(ops.transpose(grouped, (0, 2, 1, 3)), (-1, *spatial, size))
        axes = tuple(range(1, rank + 1))
        # One strip an axis (D, H, W; or H, W), the mean over the other spatial axes.
        strips = [ka_ops.mean(grouped, tuple(a for a in axes if a != axis)) for axis in axes]
        # All strips through the one 1x1 (1x1x1) conv as a (N, D + H + W, 1, [1,] m) map.
        pooled = ops.expand_dims(ops.concatenate(strips, axis=1), tuple(range(2, rank + 1)))
        pooled = ops.reshape(ops.sigmoid(self.pointwise(pooled)), (-1, sum(spatial), size))
        gated, start = grouped, 0
        for axis, length in zip(axes, spatial):
            gate = pooled[:, start : start + length]
            gated = gated * ops.expand_dims(gate, tuple(a for a in axes if a != axis))
            start = start + length
        wide = ka_ops.group_norm(gated, size, self.norm_gamma, self.norm_beta)
        local = self.local(grouped)

        def channel_softmax(t):
            return ka_ops.softmax_float32(ka_ops.mean(t, axes, keepdims=True), axis=-1)

        logits = ops.sum(channel_softmax(wide) * local + channel_softmax(local) * wide, axis=-1)
        gate = ops.sigmoid(logits)  # (N, *spatial)
        outputs = ops.reshape(
            grouped * ops.expand_dims(gate, -1), (-1, self.groups, positions, size)
        )
        outputs = ops.reshape(ops.transpose(outputs, (0, 2, 1, 3)), (-1, *spatial, channels))
        gate = ops.transpose(ops.reshape(gate, (-1, self.groups, positions)), (0, 2, 1))
        gate = ops.reshape(gate, (-1, *spatial, self.groups))
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        gate = ka_ops.from_channels_last(gate, self.data_format)
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups})
        return config
