import math

import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import check_divides_channels
from keras_attention.layers.base import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class OutlookAttention(ImageAttentionLayer):
    """Outlook attention: each position generates the weights of its k x k window.

    Reference: Yuan, Hou, Jiang, Feng and Yan, "VOLO: Vision Outlooker for
    Visual Recognition", TPAMI 2022 (https://arxiv.org/abs/2106.13112).

    A linear layer on each centre token (the input average-pooled by `stride`,
    PyTorch's `ceil_mode`: a partial window averages its valid pixels) gives,
    per head, a (k*k) x (k*k) matrix: row j holds the softmax weights (over
    the k*k source positions, float32) with which window slot j mixes the
    window's values. Values are a linear map of every token, unfolded into
    the k x k windows around the centres (zero padding k // 2, stride
    `stride`); the weighted windows are folded back onto the map, overlapping
    slots summed, and a final linear projection follows. Logits are scaled by
    `1/sqrt(C / num_heads)`.

    Numerically equal to timm's `OutlookAttention` (`timm/models/volo.py`)
    with the same weights. timm takes `padding` separately; any value other
    than `k // 2` breaks its reshape for some sizes, so it is fixed here and
    every H, W works. Windows are formed by `k * k` strided slices and folded
    by pads and sums (TFLite builtins), not `extract_patches`. The weights
    are a per-window mixing matrix, not `softmax(QK^T)V`, so
    `keras.ops.dot_product_attention` does not apply. Memory grows linearly
    with H*W: the attention is `(k*k)^2` per head per window.

    Args:
        num_heads: int, the heads; they must divide the channels. Defaults to 1.
        kernel_size: int, odd, the window size k. Defaults to 3.
        stride: int, the step between window centres (and the pooling of the
            centre tokens). Defaults to 1.
        qkv_bias: bool, whether the value projection has a bias (timm's
            `qkv_bias`). Defaults to False.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map.
        training: unused; accepted for a uniform signature.
        return_attention: if True, also return the window weights, shape
            `(batch, ceil(H / stride), ceil(W / stride), num_heads, k*k, k*k)`
            (output slot, then source slot; each row sums to 1) whatever
            `data_format` is.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 192))
    >>> y = OutlookAttention(num_heads=6)(x)
    >>> y.shape
    (None, None, None, 192)
    """

    no_volume_reason = (
        "its k x k windows and their (k*k) x (k*k) mixing weights are VOLO's 2-D token windows"
    )

    def __init__(
        self,
        num_heads=1,
        kernel_size=3,
        stride=1,
        qkv_bias=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        check_positive_int("num_heads", num_heads)
        check_positive_int("kernel_size", kernel_size)
        check_positive_int("stride", stride)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` must be odd (the window is centred). Received: "
                f"kernel_size={kernel_size}"
            )
        if qkv_bias not in (True, False):
            raise ValueError(f"`qkv_bias` must be True or False. Received: qkv_bias={qkv_bias!r}")
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.stride = stride
        self.qkv_bias = qkv_bias

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        check_divides_channels(self.__class__.__name__, "num_heads", self.num_heads, channels)
        window = self.kernel_size**2
        self.value = keras.layers.Dense(
            channels, use_bias=self.qkv_bias, dtype=self.dtype_policy, name="value"
        )
        self.attention = keras.layers.Dense(
            self.num_heads * window * window, dtype=self.dtype_policy, name="attention"
        )
        self.projection = keras.layers.Dense(channels, dtype=self.dtype_policy, name="projection")
        for dense in (self.value, self.attention, self.projection):
            dense.build((None, None, None, channels))
        self.built = True

    def _pool_centres(self, x, height, width, rows, columns):
        """Average pooling by `stride` with PyTorch's ceil_mode: partial windows
        divide by their count of real pixels, not by stride**2."""
        s = self.stride
        if s == 1:
            return x
        x = ops.pad(x, ((0, 0), (0, rows * s - height), (0, columns * s - width), (0, 0)))
        total = ops.average_pool(x, s, s, padding="valid", data_format="channels_last") * (s * s)
        row_count = ops.minimum(s, height - ops.arange(rows) * s)
        column_count = ops.minimum(s, width - ops.arange(columns) * s)
        count = ops.cast(row_count[:, None] * column_count[None, :], x.dtype)
        return total / count[None, :, :, None]

    def _unfold(self, x, rows, columns):
        """The k*k window slots of every centre, stacked: (batch, h, w, k*k, C)."""
        k, s, pad = self.kernel_size, self.stride, self.kernel_size // 2
        x = ops.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        slots = [
            x[:, i : i + (rows - 1) * s + 1 : s, j : j + (columns - 1) * s + 1 : s, :]
            for i in range(k)
            for j in range(k)
        ]
        return ops.stack(slots, axis=3)

    def _fold(self, slots, height, width, rows, columns):
        """Sums each window slot back at its pixel: (batch, h, w, k*k, C) -> (batch, H, W, C)."""
        k, s, pad = self.kernel_size, self.stride, self.kernel_size // 2
        channels = slots.shape[-1]
        outputs = 0
        for index in range(k * k):
            i, j = divmod(index, k)
            slot = slots[:, :, :, index, :]
            if s > 1:
                # Zeros between the centres put slot values at stride s.
                slot = ops.stack([slot] + [ops.zeros_like(slot)] * (s - 1), axis=2)
                slot = ops.reshape(slot, (-1, rows * s, columns, channels))
                slot = ops.stack([slot] + [ops.zeros_like(slot)] * (s - 1), axis=3)
                slot = ops.reshape(slot, (-1, rows * s, columns * s, channels))
            outputs = outputs + ops.pad(slot, ((0, 0), (i, k - 1 - i), (j, k - 1 - j), (0, 0)))
        return outputs[:, pad : pad + height, pad : pad + width, :]

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        height, width = ops.shape(x)[1], ops.shape(x)[2]
        channels = x.shape[-1]
        # ceil(H / stride) centres per column, as PyTorch's ceil_mode pooling.
        rows = (height + self.stride - 1) // self.stride
        columns = (width + self.stride - 1) // self.stride
        heads, window = self.num_heads, self.kernel_size**2
        depth = channels // heads

        centres = self._pool_centres(x, height, width, rows, columns)
        logits = ops.reshape(self.attention(centres), (-1, rows * columns, heads, window, window))
        logits = ops.cast(logits, "float32") * (1.0 / math.sqrt(depth))
        weights = ops.cast(ops.softmax(logits, axis=-1), x.dtype)

        values = self._unfold(self.value(x), rows, columns)  # (B, h, w, k*k, C)
        values = ops.reshape(values, (-1, rows * columns, window, heads, depth))
        values = ops.transpose(values, (0, 1, 3, 2, 4))  # (B, h*w, heads, k*k, depth)
        mixed = ops.matmul(weights, values)  # (B, h*w, heads, k*k, depth)
        mixed = ops.reshape(
            ops.transpose(mixed, (0, 1, 3, 2, 4)), (-1, rows, columns, window, channels)
        )
        outputs = self.projection(self._fold(mixed, height, width, rows, columns))
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        attention = None
        if return_attention:
            attention = ops.reshape(weights, (-1, rows, columns, heads, window, window))
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "kernel_size": self.kernel_size,
                "stride": self.stride,
                "qkv_bias": self.qkv_bias,
            }
        )
        return config
