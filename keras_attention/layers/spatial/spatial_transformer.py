import keras
from keras import ops

from keras_attention import ops as ka_ops
from keras_attention.layers.base import ImageAttentionLayer
from keras_attention.layers.base import is_int
from keras_attention.layers.max_pooling3d import MaxPooling3D

IDENTITY_THETA = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
# The 3x4 identity of volumes and clips, row-major: rows x', y', z'; columns x, y, z, 1.
IDENTITY_THETA_3D = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def _check_output_size(output_size):
    if output_size is None:
        return None
    if (
        not isinstance(output_size, (list, tuple))
        or len(output_size) not in (2, 3)
        or any(not is_int(s) or s < 1 for s in output_size)
    ):
        raise ValueError(
            "`output_size` must be None, a pair of positive integers (height, width) "
            "for images or a triple (depth, height, width) for volumes and clips. "
            f"Received: output_size={output_size!r}"
        )
    return tuple(output_size)


@keras.saving.register_keras_serializable(package="keras_attention")
class SpatialTransformer(ImageAttentionLayer):
    """Spatial transformer: predicts an affine warp of its input and resamples it.

    Reference: Jaderberg, Simonyan, Zisserman and Kavukcuoglu, "Spatial
    Transformer Networks", NeurIPS 2015 (https://arxiv.org/abs/1506.02025).

    A localisation network regresses the six parameters theta of a 2-D affine
    transform through a final `Dense(6)` named `"theta"`, whose kernel starts
    at 0 and bias at the identity `[1, 0, 0, 0, 1, 0]`, so the layer starts as
    the identity. For every output pixel, theta maps its normalised coordinates
    `(x, y, 1)` in [-1, 1] to the input point that is sampled bilinearly,
    reading zeros outside the image. The sampler is written with `keras.ops`
    and passes gradients to both the input and theta.

    Volumes and clips (5-D inputs): theta is a 3x4 affine transform of
    `(x, y, z, 1)` (z along the depth), from a `Dense(12)` (also `"theta"`)
    whose bias starts at the 3x4 identity; the grid is 3-D and the sampler
    trilinear, zeros outside, as PyTorch's `affine_grid`/`grid_sample` on 5-D
    sizes (`align_corners=False`, `padding_mode="zeros"`). The default
    localisation network's convolutions, poolings and global pooling are 3-D
    (3x3x3, 2x2x2). A clip's 2-D affine warp of every frame is the theta
    `[[a, b, 0, tx], [c, d, 0, ty], [0, 0, 1, 0]]`.

    Coordinates follow `align_corners=False` (PyTorch's default): -1 and 1 are
    the outer edges of the border pixels, so pixel `j` of `n` sits at
    `(2j + 1 - n) / n`, and a translation `theta[0, 2] = 2k / W` shows at
    output column j the input column `j + k`. The identity theta reproduces the
    input (up to float32 rounding of the grid, about 1e-7 relative).

    Mixed precision: the localisation network runs in the compute dtype;
    `theta`, the sampling grid and the bilinear weights are float32
    (coordinates need more digits than float16 has); the sampled values are in
    the compute dtype.

    Args:
        localization: a Keras layer or model mapping the inputs (in this layer's
            `data_format`) to features of shape `(batch, features)`, or None
            for the default net: two blocks of 3x3 conv (16, then 32 filters),
            2x2 max-pool and ReLU, then global average pooling (so any H, W
            works) and `Dense(32, tanh)`, whose bounded features keep theta in
            a sane range whatever the weights. A given one is saved with the
            layer.
        output_size: None (the input's size) or `(height, width)` of the
            resampled output; `(depth, height, width)` for 5-D inputs.
        data_format: `"channels_last"`, `"channels_first"` or `None` (Keras's
            global `image_data_format`).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D feature map or a 5-D volume or clip.
        training: passed to the localisation network.
        return_attention: if True, also return theta, shape `(batch, 2, 3)`,
            in float32; `(batch, 3, 4)` on 5-D inputs.

    Input shape:
        `(batch, H, W, C)` (channels_last) or `(batch, C, H, W)`; volumes and
        clips `(batch, D, H, W, C)` or `(batch, C, D, H, W)`.

    Output shape:
        `(batch, h, w, C)` (channels_last) or `(batch, C, h, w)`, where
        `(h, w)` is `output_size` or the input's `(H, W)`; on 5-D inputs
        `(batch, d, h, w, C)` or `(batch, C, d, h, w)`.

    Example:

    >>> x = keras.Input((28, 28, 1))
    >>> y = SpatialTransformer(output_size=(20, 20))(x)
    >>> y.shape
    (None, 20, 20, 1)
    >>> SpatialTransformer()(keras.Input((16, 32, 32, 1))).shape  # a volume
    (None, 16, 32, 32, 1)
    """

    spatial_ranks = (2, 3)

    def __init__(self, localization=None, output_size=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        if isinstance(localization, dict):  # from `get_config`
            localization = keras.saving.deserialize_keras_object(localization)
        if localization is not None and not isinstance(localization, keras.layers.Layer):
            raise ValueError(
                "`localization` must be a Keras layer or model, or None for the "
                f"default network. Received: localization={localization!r}"
            )
        self.localization = localization
        self.output_size = _check_output_size(output_size)

    def build(self, input_shape):
        channels = self._input_channels(input_shape)
        rank = self.spatial_rank
        if self.output_size is not None and len(self.output_size) != rank:
            raise ValueError(
                f"`output_size` must have one size per spatial axis of the inputs ({rank}). "
                f"Received: output_size={self.output_size} for inputs of shape "
                f"{tuple(input_shape)}"
            )
        shape = tuple(input_shape)
        if self.localization is None:
            # The default net runs channels_last inside (see `call`), so its
            # weights are the same whatever `data_format` is.
            self.loc_layers = self._default_localization()
            shape = ka_ops.shape_to_channels_last(shape, self.data_format)
            for layer in self.loc_layers:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        else:
            if not self.localization.built:
                self.localization.build(shape)
            shape = self.localization.compute_output_shape(shape)
        if len(shape) != 2 or shape[-1] is None:
            raise ValueError(
                "`localization` must map the inputs to features of shape (batch, "
                f"features). Received: localization output shape {shape} for "
                f"inputs of shape {tuple(input_shape)} with {channels} channels"
            )
        # theta stays float32 under mixed precision: sampling coordinates need
        # more digits than float16 has (1 pixel of 1000 is 0.002 in [-1, 1]).
        identity = IDENTITY_THETA if rank == 2 else IDENTITY_THETA_3D
        self.theta = keras.layers.Dense(
            len(identity),
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(identity),
            dtype="float32",
            name="theta",
        )
        self.theta.build(shape)
        self.built = True

    def _default_localization(self):
        rank = self.spatial_rank
        conv, pool, gap = {
            2: (
                keras.layers.Conv2D,
                keras.layers.MaxPooling2D,
                keras.layers.GlobalAveragePooling2D,
            ),
            # The package's MaxPooling3D: 2-D max pools (LiteRT builtins).
            3: (
                keras.layers.Conv3D,
                MaxPooling3D,
                keras.layers.GlobalAveragePooling3D,
            ),
        }[rank]
        layers = []
        for i, filters in enumerate((16, 32)):
            layers += [
                conv(
                    filters,
                    3,
                    padding="same",
                    data_format="channels_last",
                    dtype=self.dtype_policy,
                    name=f"loc_conv{i}",
                ),
                pool(
                    2,
                    padding="same",
                    data_format="channels_last",
                    dtype=self.dtype_policy,
                    name=f"loc_pool{i}",
                ),
                keras.layers.ReLU(dtype=self.dtype_policy, name=f"loc_relu{i}"),
            ]
        return layers + [
            gap(data_format="channels_last", dtype=self.dtype_policy, name="loc_gap"),
            keras.layers.Dense(32, activation="tanh", dtype=self.dtype_policy, name="loc_dense"),
        ]

    def call(self, inputs, training=None, return_attention=False):
        # channels_last inside: TensorFlow has no NCHW convolution on CPUs
        # without oneDNN.
        images = ka_ops.to_channels_last(inputs, self.data_format)
        if self.localization is None:
            features = images
            for layer in self.loc_layers:
                features = layer(features, training=training)
        else:
            features = self.localization(inputs, training=training)
        sizes = self.output_size or tuple(ops.shape(images)[1:-1])
        if self.spatial_rank == 2:
            theta = ops.reshape(self.theta(features), (-1, 2, 3))
            outputs = ka_ops.bilinear_sample(images, ka_ops.affine_grid(theta, *sizes))
        else:
            theta = ops.reshape(self.theta(features), (-1, 3, 4))
            outputs = ka_ops.trilinear_sample(images, ka_ops.affine_grid_3d(theta, *sizes))
        outputs = ka_ops.from_channels_last(outputs, self.data_format)
        return self._outputs(outputs, theta, return_attention)

    def compute_output_shape(self, input_shape):
        shape = ka_ops.shape_to_channels_last(input_shape, self.data_format)
        sizes = self.output_size or tuple(shape[1:-1])
        return ka_ops.shape_from_channels_last((shape[0], *sizes, shape[-1]), self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "localization": None
                if self.localization is None
                else keras.saving.serialize_keras_object(self.localization),
                "output_size": self.output_size,
            }
        )
        return config
