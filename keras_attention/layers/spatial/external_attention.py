import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.base import check_positive_int
from keras_attention.layers.base import pointwise_conv

# The released code's guard against a zero L1 norm.
L1_EPSILON = 1e-9


def _fan_out_normal():
    # The released code's initialisation of every convolution and memory:
    # normal(0, sqrt(2 / (k * k * out_channels))).
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


@keras.saving.register_keras_serializable(package="keras_attention")
class ExternalAttention(ImageAttentionLayer):
    """External attention: positions attend to two small learned memories shared by all inputs.

    Reference: Guo, Liu, Mu and Hu, "Beyond Self-attention: External
    Attention using Two Linear Layers for Visual Tasks", 2021
    (https://arxiv.org/abs/2105.02358); code: github.com/MenghaoGuo/EANet
    (`model_torch.py`, `External_attention`).

    After a 1x1 convolution (with bias), the features F (HW x C) meet a key
    memory `M_k` (C x S, `units` = S): `A = F M_k`. Double normalisation: a
    softmax over positions (each memory unit's column), then an L1
    normalisation over the S units of each position, `A / (1e-9 + sum_s A)`,
    both in float32. The value memory reads out `A M_v` (S x C), followed by a
    bias-free 1x1 convolution, BatchNormalization, the residual sum and a
    ReLU: `outputs = relu(inputs + BN(conv(A M_v)))`. Cost and memory are
    linear in H*W (an HW x S map, S fixed).

    As the released code, not the paper's bare equations, it has the
    convolutions, BatchNormalization, residual and ReLU around the attention;
    and `M_v` starts as `M_k^T`. Differs from that code in one way: there,
    `M_v`'s tensor is a view of `M_k`'s, so the two stay tied through
    training (one memory in effect); here they are two weights, the two
    memories the paper describes. With the same weights the outputs match the
    code's forward pass (eval mode).

    Volumes and clips: 1x1x1 convolutions, and the softmax runs over all
    D * H * W positions (the memories do not depend on the rank).

    Args:
        units: int, S, the memory size. Defaults to 64 (the paper's and
            code's).
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return the doubly normalised
            attention `(batch, H * W, units)`; each row sums to 1 over the
            units (up to the 1e-9 guard); `(batch, D * H * W, units)` on 5-D
            inputs.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 256))
    >>> y = ExternalAttention(units=64)(x)
    >>> y.shape
    (None, None, None, 256)
    """

    spatial_ranks = (2, 3)

    def __init__(self, units=64, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("units", units)
        self.units = units

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        self.input_conv = self._conv(channels, "input_conv", True, channels)
        self.memory_key = self.add_weight(
            shape=(channels, self.units), initializer=_fan_out_normal(), name="memory_key"
        )
        # The released code starts M_v as M_k transposed.
        self.memory_value = self.add_weight(
            shape=(self.units, channels),
            initializer=lambda shape, dtype=None: ops.transpose(self.memory_key.value),
            name="memory_value",
        )
        self.output_conv = self._conv(channels, "output_conv", False, channels)
        self.norm = batch_norm(
            "norm", (None,) * (self.spatial_rank + 1) + (channels,), self.dtype_policy
        )
        self.built = True

    def _conv(self, filters, name, use_bias, channels):
        return pointwise_conv(
            name,
            filters,
            channels,
            self.dtype_policy,
            rank=self.spatial_rank,
            use_bias=use_bias,
            kernel_initializer=_fan_out_normal(),
        )

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        sizes = tuple(ops.shape(x)[1:-1])  # (H, W) or (D, H, W)
        count = 1
        for size in sizes:
            count = count * size
        features = ops.reshape(self.input_conv(x), (-1, count, x.shape[-1]))
        energy = ops.matmul(
            ops.cast(features, "float32"), ops.cast(self.memory_key, "float32")
        )  # (batch, HW, S)
        attention = ops.softmax(energy, axis=1)  # over positions
        attention = attention / (L1_EPSILON + ops.sum(attention, axis=-1, keepdims=True))
        attention = ops.cast(attention, self.compute_dtype)
        read = ops.matmul(attention, ops.cast(self.memory_value, self.compute_dtype))
        read = ops.reshape(read, (-1, *sizes, x.shape[-1]))
        outputs = ops.relu(x + self.norm(self.output_conv(read), training=training))
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, attention if return_attention else None, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config
