import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers import base
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_choice
from keras_attention.layers.base import check_positive_int

COMBINES = ("sum", "product")


@keras.saving.register_keras_serializable(package="keras_attention")
class BottleneckAttention(ImageAttentionLayer):
    """Bottleneck Attention Module (BAM): parallel channel and spatial branches, x * (1 + M).

    Reference: Park, Woo, Lee and Kweon, "BAM: Bottleneck Attention Module",
    BMVC 2018 (https://arxiv.org/abs/1807.06514).

    Channel branch: global average pooling, `Dense(C // r)`,
    BatchNormalization, ReLU, `Dense(C)` -> one logit per channel. Spatial
    branch: 1x1 convolution to `C // r`, then two 3x3 convolutions of dilation
    `dilation_rate` (each with BatchNormalization and ReLU, the first 1x1 too),
    then a 1x1 convolution to a single map -> one logit per pixel. All layers
    have biases, as in the authors' code. The branches combine by broadcast
    into `M = sigmoid(Mc + Ms)` of the input's shape and the output is
    `x * (1 + M)`.

    `combine="sum"` is the paper's equation (and its best row in the
    ablation); the authors' released code, and the checkpoints trained with
    it, multiply the branches instead: `combine="product"` gives
    `sigmoid(Mc * Ms)`. BatchNormalization of the pooled vector runs on any
    batch size, 1 included (PyTorch's BatchNorm1d refuses a batch of 1 in
    training). With C=256 and r=16 it has 17,489 parameters (17,361
    trainable).

    Volumes and clips: the channel branch pools all D*H*W positions; the
    spatial branch's convolutions are 1x1x1 and dilated 3x3x3 (`Conv3D`'s
    weights, dilation `dilation_rate` along depth too, computed as 2-D
    convolutions summed over the depth taps by `keras_attention.ops.conv`),
    giving one logit per voxel.
    With C=256 and r=16: 26,705 parameters. 2-D weights inflate onto it by
    path (kernels centred in depth).

    Mixed precision: its spatial means accumulate in float32
    (`keras_attention.ops.mean`); the MLP, the dilated convolutions and the
    sigmoid run in the compute dtype, with BatchNormalization's statistics in
    float32 (Keras's).

    Args:
        reduction: int, the bottleneck ratio r of both branches (widths
            `max(1, C // r)`). Defaults to 16.
        dilation_rate: int, the dilation of the two 3x3 convolutions.
            Defaults to 4.
        combine: `"sum"` (the paper) or `"product"` (the authors' code).
            Defaults to `"sum"`.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return the attention map `M`, the
            input's shape (`(batch, D, H, W, C)` for a channels_last clip).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = BottleneckAttention(reduction=16)(x)
    >>> y.shape
    (None, None, None, 64)
    """

    spatial_ranks = (2, 3)

    def __init__(self, reduction=16, dilation_rate=4, combine="sum", data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("reduction", reduction)
        check_positive_int("dilation_rate", dilation_rate)
        check_choice("combine", combine, COMBINES)
        self.reduction = reduction
        self.dilation_rate = dilation_rate
        self.combine = combine

    def _conv(self, name, filters, kernel_size, in_channels, dilation_rate=1):
        return base.conv(
            self.spatial_rank,
            name,
            filters,
            kernel_size,
            in_channels,
            self.dtype_policy,
            padding="same",
            dilation_rate=dilation_rate,
        )

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        units = max(1, channels // self.reduction)
        self.channel_hidden = keras.layers.Dense(
            units, dtype=self.dtype_policy, name="channel_hidden"
        )
        self.channel_hidden.build((None, channels))
        self.channel_norm = batch_norm("channel_norm", (None, units), self.dtype_policy)
        self.channel_logits = keras.layers.Dense(
            channels, dtype=self.dtype_policy, name="channel_logits"
        )
        self.channel_logits.build((None, units))
        map_shape = (None,) * (self.spatial_rank + 1) + (units,)
        self.spatial_reduce = self._conv("spatial_reduce", units, 1, channels)
        self.spatial_reduce_norm = batch_norm("spatial_reduce_norm", map_shape, self.dtype_policy)
        self.spatial_conv1 = self._conv("spatial_conv1", units, 3, units, self.dilation_rate)
        self.spatial_norm1 = batch_norm("spatial_norm1", map_shape, self.dtype_policy)
        self.spatial_conv2 = self._conv("spatial_conv2", units, 3, units, self.dilation_rate)
        self.spatial_norm2 = batch_norm("spatial_norm2", map_shape, self.dtype_policy)
        self.spatial_logits = self._conv("spatial_logits", 1, 1, units)
        self.built = True

    def _dilated(self, conv, x):
        """`conv(x)` by `keras_attention.ops.conv`, its weights the layer's."""
        # TensorFlow runs the layer's dilated Conv3D through a 5-D SpaceToBatchND,
        # which LiteRT has no builtin for; ops.conv sums 2-D convolutions instead.
        outputs = ka_ops.conv(
            x,
            ops.cast(conv.kernel, x.dtype),
            padding="same",
            dilation_rate=conv.dilation_rate,
        )
        return outputs + ops.cast(conv.bias, x.dtype)

    def call(self, inputs, training=None, return_attention=False):
        rank = len(inputs.shape) - 2
        pooled = ka_ops.spatial_mean(inputs, self.data_format)
        hidden = ops.relu(self.channel_norm(self.channel_hidden(pooled), training=training))
        # (batch, 1, 1, C) or (batch, 1, 1, 1, C)
        channel = ka_ops.expand_channels(self.channel_logits(hidden), "channels_last", rank + 2)

        x = ka_ops.to_channels_last(inputs, self.data_format)
        x = ops.relu(self.spatial_reduce_norm(self.spatial_reduce(x), training=training))
        x = ops.relu(self.spatial_norm1(self._dilated(self.spatial_conv1, x), training=training))
        x = ops.relu(self.spatial_norm2(self._dilated(self.spatial_conv2, x), training=training))
        spatial = self.spatial_logits(x)  # (batch, H, W, 1) or (batch, D, H, W, 1)

        logits = channel + spatial if self.combine == "sum" else channel * spatial
        attention = ka_ops.from_channels_last(ops.sigmoid(logits), self.data_format)
        return self._outputs(inputs * (1.0 + attention), attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "dilation_rate": self.dilation_rate,
                "combine": self.combine,
            }
        )
        return config
