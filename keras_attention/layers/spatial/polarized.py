import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_choice

LAYOUTS = ("parallel", "sequential")


def _positions(x):
    """The spatial axes of channels_last (batch, [D,] H, W, C): (1, 2) or (1, 2, 3)."""
    return tuple(range(1, len(x.shape) - 1))


def _softmax_over_positions(x):
    """Softmax over the spatial axes of (batch, [D,] H, W, C), in float32."""
    x = ops.cast(x, "float32")
    x = ops.exp(x - ops.max(x, axis=_positions(x), keepdims=True))
    return x / ops.sum(x, axis=_positions(x), keepdims=True)


@keras.saving.register_keras_serializable(package="keras_attention")
class PolarizedSelfAttention(ImageAttentionLayer):
    """Polarized self-attention: a channel-only and a spatial-only gate.

    Reference: Liu, Liu, Fan and Huang, "Polarized Self-Attention: Towards
    High-quality Pixel-wise Regression", 2021 (https://arxiv.org/abs/2107.00782).

    Follows the authors' released code (DeLightCMU/PSA,
    `semantic-segmentation/network/PSA.py`: `PSA_p` for `layout="parallel"`,
    `PSA_s` for `"sequential"`), which differs from the paper's equations:

    - Channel-only branch (both layouts): a 1x1 convolution to one channel,
      softmax over the H*W positions (float32), pools a 1x1 convolution to C/2
      channels; the (C/2) vector goes to C channels and a sigmoid gates the
      channels. The paper puts LayerNorm there; the parallel code has a single
      1x1 convolution (no LayerNorm), the sequential code a bottleneck
      `1x1 (C/2 -> C/8, bias) -> LayerNorm -> ReLU -> 1x1 (C/8 -> C, bias)`.
    - Spatial-only branch: the paper softmaxes the globally pooled query over
      its C/2 channels. The parallel code does not: it takes the dot product
      of the pooled query with a second 1x1 projection at every position and
      softmaxes that map over the H*W positions before the sigmoid. The
      sequential code softmaxes the second projection over positions (per
      channel) before the dot product.
    - `parallel`: `x * channel_gate + x * spatial_gate`; `sequential`: the
      spatial gate is computed from and applied to `x * channel_gate`.

    All projections are bias-free except the sequential bottleneck's, as in
    the code. The weights are gates on one collapsed axis, not
    `softmax(QK^T)V`; memory grows linearly with H*W.

    Volumes and clips: the softmaxes and the pooling run over all D * H * W
    positions (the projections are per position, so nothing else changes);
    the spatial gate is then a sigmoid of weights that sum to 1 over D times
    as many positions, so a clip of D equal frames is not gated as its image.

    Mixed precision: both softmaxes, the pooling over positions of the channel
    branch and the spatial branch's energies run in float32 (its query mean
    accumulates in float32 too); the convolutions and the sigmoid gates run in
    the compute dtype.

    Args:
        layout: `"parallel"` (PSA_p, default) or `"sequential"` (PSA_s).
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip, with at least 2
            channels (8 for `"sequential"`).
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return
            `{"channel": (batch, C), "spatial": (batch, H, W, 1)}`, the two
            sigmoid gates (the spatial one as `(batch, 1, H, W)` for
            `channels_first`); on 5-D inputs the spatial gate is
            `(batch, D, H, W, 1)` (`(batch, 1, D, H, W)`).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = PolarizedSelfAttention(layout="sequential")(x)
    >>> y.shape
    (None, None, None, 256)
    """

    spatial_ranks = (2, 3)

    def __init__(self, layout="parallel", data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_choice("layout", layout, LAYOUTS)
        self.layout = layout

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        inner = channels // 2
        minimum = 8 if self.layout == "sequential" else 2
        if channels < minimum:
            raise ValueError(
                f"PolarizedSelfAttention with layout={self.layout!r} needs at least "
                f"{minimum} channels. Received `inputs` with {channels} channels"
            )

        def dense(units, name, use_bias=False, width=channels):
            layer = keras.layers.Dense(units, use_bias=use_bias, dtype=self.dtype_policy, name=name)
            layer.build((None, width))
            return layer

        # Each 1x1 convolution of the code is a Dense over the channel axis.
        self.channel_query = dense(1, "channel_query")
        self.channel_value = dense(inner, "channel_value")
        if self.layout == "parallel":
            self.channel_up = dense(channels, "channel_up", width=inner)
        else:
            bottleneck = inner // 4
            self.channel_reduce = dense(bottleneck, "channel_reduce", True, inner)
            self.channel_norm = keras.layers.LayerNormalization(
                epsilon=1e-5, dtype=self.dtype_policy, name="channel_norm"
            )
            self.channel_norm.build((None, bottleneck))
            self.channel_expand = dense(channels, "channel_expand", True, bottleneck)
        self.spatial_query = dense(inner, "spatial_query")
        self.spatial_value = dense(inner, "spatial_value")
        self.built = True

    def _channel_gate(self, x):
        """(batch, [D,] H, W, C) -> (batch, C): values pooled by softmax weights over positions."""
        weights = _softmax_over_positions(self.channel_query(x))  # float32
        # The pooling over positions sums H*W products: float32, then back.
        values = ops.cast(self.channel_value(x), "float32")
        context = ops.cast(ops.sum(values * weights, axis=_positions(x)), x.dtype)  # (batch, C/2)
        if self.layout == "parallel":
            context = self.channel_up(context)
        else:
            context = ops.relu(self.channel_norm(self.channel_reduce(context)))
            context = self.channel_expand(context)
        return ops.sigmoid(context)

    def _spatial_gate(self, x):
        """(batch, [D,] H, W, C) -> (batch, [D,] H, W, 1)."""
        query = ka_ops.mean(self.spatial_query(x), axis=_positions(x), keepdims=True)
        value = self.spatial_value(x)
        if self.layout == "parallel":
            # PSA_p: the dot products are the energies softmaxed over positions.
            energy = ops.sum(ops.cast(query, "float32") * ops.cast(value, "float32"), axis=-1)
            context = _softmax_over_positions(energy[..., None])
        else:
            # PSA_s: each value channel is softmaxed over positions first.
            value = _softmax_over_positions(value)
            context = ops.sum(ops.cast(query, "float32") * value, axis=-1, keepdims=True)
        return ops.cast(ops.sigmoid(context), x.dtype)

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        channel = self._channel_gate(x)
        channel_out = x * ops.reshape(channel, (-1,) + (1,) * self.spatial_rank + (x.shape[-1],))
        if self.layout == "parallel":
            spatial = self._spatial_gate(x)
            outputs = channel_out + x * spatial
        else:
            spatial = self._spatial_gate(channel_out)
            outputs = channel_out * spatial
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        attention = None
        if return_attention:
            attention = {
                "channel": channel,
                "spatial": ka_ops.from_channels_last(spatial, self.data_format),
            }
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"layout": self.layout})
        return config
