import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import pointwise_conv


@keras.saving.register_keras_serializable(package="keras_attention")
class DoubleAttention(ImageAttentionLayer):
    """Double attention: gather global descriptors by attention, distribute them by attention (A²).

    Reference: Chen, Kalantidis, Li, Yan and Feng, "A²-Nets: Double
    Attention Networks", NeurIPS 2018 (https://arxiv.org/abs/1810.11579).

    1x1 convolutions give features A (`feature_channels` = m), attention maps
    B (`descriptors` = n) and attention vectors V (n). Gather: each of the n
    maps is normalised by a softmax over positions and pools the features
    bilinearly, `G = A^T softmax_positions(B)` (m x n global descriptors).
    Distribute: at each position a softmax over the n descriptors mixes them,
    `Z_p = G softmax_descriptors(V_p)` (m channels). A 1x1 convolution takes Z
    back to C and the block is residual: `outputs = inputs + conv(Z)`. Both
    softmaxes and the gather's pooling over positions run in float32 under
    mixed precision. Nothing of size (HW x HW) is formed: memory grows
    linearly with H*W.

    The authors released no code, so this follows the paper's equations
    (1)-(4) and its block figure (the 1x1 expansion and the residual sum).
    Deviations, all exact rewrites or choices the paper leaves open: the
    convolutions of A and B carry no bias (B's is a constant per map under
    the softmax over positions, which cancels it; A's reaches Z unchanged,
    because the distribution weights sum to 1, so the output convolution's
    bias covers it); m and n default to C/4.

    Volumes and clips (the paper's video models): 1x1x1 convolutions, and
    the gather's softmax and pooling run over all D * H * W positions.

    Args:
        feature_channels: int or None, m, the channels of the gathered
            features; None means `max(1, C // 4)`.
        descriptors: int or None, n, the number of global descriptors; None
            means `max(1, C // 4)`.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return a dict: `"gather"`, the
            attention maps `(batch, H * W, n)` (each column sums to 1 over
            positions), and `"distribute"`, the attention vectors
            `(batch, H * W, n)` (each row sums to 1 over descriptors); on 5-D
            inputs both are `(batch, D * H * W, n)`.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = DoubleAttention(feature_channels=64, descriptors=64)(x)
    >>> y.shape
    (None, None, None, 256)
    """

    spatial_ranks = (2, 3)

    def __init__(self, feature_channels=None, descriptors=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("feature_channels", feature_channels, allow_none=True)
        check_positive_int("descriptors", descriptors, allow_none=True)
        self.feature_channels = feature_channels
        self.descriptors = descriptors

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        features = self.feature_channels or max(1, channels // 4)
        descriptors = self.descriptors or max(1, channels // 4)
        self.features = self._conv(features, "features", False, channels)
        self.gather = self._conv(descriptors, "gather", False, channels)
        self.distribute = self._conv(descriptors, "distribute", True, channels)
        self.project = self._conv(channels, "project", True, features)
        self.built = True

    def _conv(self, filters, name, use_bias, channels):
        return pointwise_conv(
            name, filters, channels, self.dtype_policy, rank=self.spatial_rank, use_bias=use_bias
        )

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        sizes = tuple(ops.shape(x)[1:-1])  # (H, W) or (D, H, W)
        count = 1
        for size in sizes:
            count = count * size

        def positions(t):  # (batch, [D,] H, W, d) -> (batch, [D *] H * W, d)
            return ops.reshape(t, (-1, count, t.shape[-1]))

        features = positions(self.features(x))
        gather32 = ops.softmax(ops.cast(positions(self.gather(x)), "float32"), axis=1)
        gather = ops.cast(gather32, x.dtype)
        distribute = ka_ops.softmax_float32(positions(self.distribute(x)), axis=-1)
        # The gather pools over all H*W positions: float32, then back (the
        # descriptors are averages of the features, as bounded as they are).
        descriptors = ops.einsum("bpm,bpn->bmn", ops.cast(features, "float32"), gather32)
        descriptors = ops.cast(descriptors, x.dtype)
        distributed = ops.einsum("bpn,bmn->bpm", distribute, descriptors)
        distributed = ops.reshape(distributed, (-1, *sizes, distributed.shape[-1]))
        outputs = ka_ops.from_channels_last(x + self.project(distributed), self.data_format)
        attention = {"gather": gather, "distribute": distribute} if return_attention else None
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"feature_channels": self.feature_channels, "descriptors": self.descriptors})
        return config
