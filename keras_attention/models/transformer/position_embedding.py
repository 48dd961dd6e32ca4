import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attention")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding of every position (and channel) to the input.

    Reference: Dosovitskiy et al., "An Image is Worth 16x16 Words" (ViT),
    ICLR 2021 (https://arxiv.org/abs/2010.11929); VOLO adds it to its
    `(batch, H, W, C)` token map after the outlooker stage (timm's
    `pos_embed`, shape (1, H, W, C), truncated-normal initialised with std
    0.02). The embedding has the input's shape without the batch axis, so
    the sizes must be known when the layer is built, and the layer then takes
    that size only.

    Args:
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a tensor of rank 3 or more whose non-batch sizes are fixed.

    Output shape:
        Same as the input.

    Example:

    >>> PositionEmbedding()(keras.ops.ones((2, 4, 4, 8))).shape
    (2, 4, 4, 8)
    """

    def build(self, input_shape):
        if len(input_shape) < 3 or any(size is None for size in input_shape[1:]):
            raise ValueError(
                "PositionEmbedding needs an input of rank 3 or more with every size but "
                f"the batch known. Received: input_shape={tuple(input_shape)}"
            )
        self.embedding = self.add_weight(
            shape=(1, *input_shape[1:]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="embedding",
        )
        self.built = True

    def call(self, inputs):
        return inputs + ops.cast(self.embedding, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)
