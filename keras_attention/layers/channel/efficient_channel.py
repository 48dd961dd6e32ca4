import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_choice
from keras_attention.layers.base import check_number
from keras_attention.layers.base import check_positive_int

PADDINGS = ("same", "circular")


@keras.saving.register_keras_serializable(package="keras_attention")
class EfficientChannelAttention(ImageAttentionLayer):
    """Efficient Channel Attention (ECA): a 1-D convolution across channels.

    Reference: Wang, Wu, Zhu, Li, Zuo and Hu, "ECA-Net: Efficient Channel
    Attention for Deep Convolutional Neural Networks", CVPR 2020
    (https://arxiv.org/abs/1910.03151).

    Global average pooling, then a 1-D convolution of size k over the channel
    axis (no bias, "same" padding), then a sigmoid gate. It has exactly k
    parameters. Unless `kernel_size` is given, k adapts to the channel count:
    `t = int(|(log2(C) + b) / gamma|)` and k is t, or t + 1 when t is even
    (C=64 -> 3, C=256 -> 5, C=2048 -> 7).

    `padding="circular"` is timm's circular ECA (CECA, `CecaModule`): the
    channel axis wraps around, so the first and last channels are neighbours
    instead of seeing zeros. Same parameters, same cost.

    The 1-D convolution runs on the pooled `(batch, C)` vector, which has no
    image data format: it is channels_last whatever `data_format` is, so
    `channels_first` works on CPUs without NCHW kernels too.

    Volumes and clips: the same layer takes 5-D inputs; the mean then runs over
    depth, height and width, and the 1-D convolution across channels is
    unchanged (timm-3d's `EcaModule` and `CecaModule`).

    Mixed precision: its spatial means accumulate in float32
    (`keras_attention.ops.mean`); the 1-D convolution and the sigmoid gate run
    in the compute dtype.

    Args:
        kernel_size: positive odd int or None (adaptive). Defaults to None.
        gamma: positive number, the slope of the adaptive rule. Defaults to 2.
        b: number, the offset of the adaptive rule. Defaults to 1.
        padding: `"same"` (zeros beyond the first and last channel, the
            paper's ECA) or `"circular"` (timm's CECA). Defaults to `"same"`.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the channel gate, shape
            `(batch, C)` (for volumes too).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> layer = EfficientChannelAttention()
    >>> y = layer(keras.ops.ones((1, 7, 7, 256)))
    >>> layer.kernel_size_for(256)
    5
    """

    spatial_ranks = (2, 3)

    def __init__(self, kernel_size=None, gamma=2, b=1, padding="same", data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("kernel_size", kernel_size, allow_none=True)
        if kernel_size is not None and kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` must be odd so that the 1-D convolution is "
                f"centred on each channel. Received: kernel_size={kernel_size}"
            )
        check_number("gamma", gamma, positive=True)
        check_number("b", b)
        check_choice("padding", padding, PADDINGS)
        self.kernel_size = kernel_size
        self.gamma = gamma
        self.b = b
        self.padding = padding

    def kernel_size_for(self, channels):
        """The 1-D kernel size used for `channels` input channels."""
        if self.kernel_size is not None:
            return self.kernel_size
        return ka_ops.eca_kernel_size(channels, self.gamma, self.b)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        kernel_size = self.kernel_size_for(channels)
        if self.padding == "circular" and kernel_size // 2 > channels:
            raise ValueError(
                f"`padding`='circular' wraps at most C={channels} channels on each "
                f"side, but kernel_size={kernel_size} needs {kernel_size // 2}"
            )
        # Circular padding is done by hand in `call`; the conv then pads nothing.
        # data_format is fixed: the pooled vector has no image layout, and a
        # Conv1D would otherwise follow the global setting to an NCW conv.
        self.conv = keras.layers.Conv1D(
            1,
            kernel_size,
            padding="same" if self.padding == "same" else "valid",
            use_bias=False,
            data_format="channels_last",
            dtype=self.dtype_policy,
            name="conv",
        )
        self.conv.build((None, channels, 1))
        self.built = True

    def call(self, inputs, training=None, return_attention=False):
        if self.padding == "circular":
            # A plain reduction, not spatial_mean's AvgPool: TFLite's int8 quantizer
            # gives a pool's input its output's scale, and the concatenation below
            # imposes its own on that output, which would clip the layer input.
            squeezed = ka_ops.mean(inputs, ka_ops.spatial_axes(self.data_format, len(inputs.shape)))
            half = self.conv.kernel_size[0] // 2
            if half:
                squeezed = ops.concatenate(
                    [squeezed[:, -half:], squeezed, squeezed[:, :half]], axis=-1
                )
        else:
            squeezed = ka_ops.spatial_mean(inputs, self.data_format)
        # Channels become the 1-D conv's "steps": (batch, C) -> (batch, C, 1).
        gate = ops.sigmoid(self.conv(squeezed[:, :, None])[:, :, 0])
        outputs = inputs * ka_ops.expand_channels(gate, self.data_format, len(inputs.shape))
        return self._outputs(outputs, gate, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "gamma": self.gamma,
                "b": self.b,
                "padding": self.padding,
            }
        )
        return config
