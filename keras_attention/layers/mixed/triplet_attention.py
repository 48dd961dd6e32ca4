import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import batch_norm
from keras_attention.layers.mixed.cbam import check_odd_kernel_size

# Branch name -> the axis of the channels_last (batch, H, W, C) map it Z-pools away.
BRANCHES = {"channel_width": 1, "height_channel": 2, "height_width": 3}


@keras.saving.register_keras_serializable(package="keras_attention")
class TripletAttention(ImageAttentionLayer):
    """Triplet Attention: three rotated spatial gates over (C, W), (H, C) and (H, W).

    Reference: Misra, Nalamada, Arasanipalai and Hou, "Rotate to Attend:
    Convolutional Triplet Attention Module", WACV 2021
    (https://arxiv.org/abs/2010.03045).

    Each branch Z-pools one axis away (max and mean, in that order, as in the
    authors' code), convolves the 2-channel plane of the two other axes with a
    `kernel_size` x `kernel_size` convolution without bias, applies
    BatchNormalization and a sigmoid, and rescales the input with the gate
    broadcast along the pooled axis:

    - `channel_width`: pools H; the plane has rows C and columns W;
    - `height_channel`: pools W; rows H, columns C;
    - `height_width`: pools C; rows H, columns W (CBAM's spatial gate).

    The output is the average of the three rescaled maps (of the first two
    with `spatial=False`). Rows and columns follow the authors' permutations,
    so their 7x7 weights load unchanged. BatchNormalization uses this
    package's momentum 0.9 (their code uses PyTorch's 0.01, Keras's 0.99);
    inference is the same. With the default 7x7 kernels it has 3 * (98 + 4)
    = 306 parameters (294 + 6 trainable), whatever C.

    Mixed precision: the mean pools accumulate in float32
    (`keras_attention.ops.mean`); the max pools, the convolutions and the
    sigmoid gates run in the compute dtype, with BatchNormalization's
    statistics in float32 (Keras's).

    Args:
        kernel_size: positive odd int, the size of the three convolutions.
            Defaults to 7.
        spatial: bool, include the (H, W) branch. Defaults to True.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map.
        training: bool, BatchNormalization's mode.
        return_attention: if True, also return a dict of the gates, each
            broadcastable to the input: `"channel_width"` `(batch, 1, W, C)`,
            `"height_channel"` `(batch, H, 1, C)` and `"height_width"`
            `(batch, H, W, 1)` (channels_last; channels_first gives them in
            `(batch, C, H, W)` order).

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`. Images
        only: a 5-D volume raises a ValueError, as the rotations of a
        (C, D, H, W) tensor need branches the paper does not define.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.Input((None, None, 64))
    >>> y = TripletAttention()(x)
    >>> y.shape
    (None, None, None, 64)
    """

    no_volume_reason = (
        "its three branches rotate the (C, H, W) tensor through its three planes, "
        "one 2-D convolution each; a (C, D, H, W) tensor has six planes, and its branches "
        "(which axes to pool, which to convolve, with what kernels) are not in the paper"
    )

    def __init__(self, kernel_size=7, spatial=True, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        check_odd_kernel_size(kernel_size)
        if not isinstance(spatial, bool):
            raise ValueError(f"`spatial` must be a bool. Received: spatial={spatial!r}")  # noqa: TRY004
        self.kernel_size = kernel_size
        self.spatial = spatial

    def _branches(self):
        return [b for b in BRANCHES if self.spatial or b != "height_width"]

    def build(self, input_shape):
        self._input_channels(input_shape)
        for branch in self._branches():
            conv = keras.layers.Conv2D(
                1,
                self.kernel_size,
                padding="same",
                use_bias=False,
                data_format="channels_last",
                dtype=self.dtype_policy,
                name=f"{branch}_conv",
            )
            conv.build((None, None, None, 2))
            setattr(self, f"{branch}_conv", conv)
            setattr(
                self,
                f"{branch}_norm",
                batch_norm(f"{branch}_norm", (None, None, None, 1), self.dtype_policy),
            )
        self.built = True

    def _gate(self, x, branch, training):
        """The branch's sigmoid gate, broadcastable to channels_last `x`."""
        axis = BRANCHES[branch]
        pooled = [ops.expand_dims(p, -1) for p in (ops.max(x, axis=axis), ka_ops.mean(x, axis))]
        if branch == "channel_width":  # (batch, W, C, 1) -> rows C
            pooled = [ops.transpose(p, (0, 2, 1, 3)) for p in pooled]
        kernel = getattr(self, f"{branch}_conv").kernel
        norm = getattr(self, f"{branch}_norm")
        # The conv of the Z-pool's (max, mean) pair, without stacking the two.
        gate = ops.sigmoid(norm(ka_ops.conv_of_pooled_pair(*pooled, kernel), training=training))
        if branch == "channel_width":
            return ops.transpose(gate, (0, 3, 2, 1))  # (batch, C, W, 1) -> (batch, 1, W, C)
        if branch == "height_channel":
            return ops.transpose(gate, (0, 1, 3, 2))  # (batch, H, C, 1) -> (batch, H, 1, C)
        return gate

    def call(self, inputs, training=None, return_attention=False):
        x = ka_ops.to_channels_last(inputs, self.data_format)
        gates = {branch: self._gate(x, branch, training) for branch in self._branches()}
        outputs = sum(x * gate for gate in gates.values()) * (1.0 / len(gates))
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        attention = {
            branch: ka_ops.from_channels_last(gate, self.data_format)
            for branch, gate in gates.items()
        }
        return self._outputs(outputs, attention, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "spatial": self.spatial})
        return config
