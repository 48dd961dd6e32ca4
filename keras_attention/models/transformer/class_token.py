import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attention")
class ClassToken(keras.layers.Layer):
    """Prepends one learned class token to a sequence of tokens.

    Reference: Dosovitskiy et al., "An Image is Worth 16x16 Words" (ViT),
    ICLR 2021 (https://arxiv.org/abs/2010.11929); timm's `cls_token`
    parameter, shape (1, 1, C), truncated-normal initialised with std 0.02.

    Args:
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tokens of shape `(batch, N, C)`.

    Output shape:
        `(batch, N + 1, C)`, the class token first.

    Example:

    >>> ClassToken()(keras.ops.ones((2, 4, 8))).shape
    (2, 5, 8)
    """

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "ClassToken expects tokens of shape (batch, N, C) with C known. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="token",
        )
        self.built = True

    def call(self, inputs):
        token = ops.cast(self.token, inputs.dtype)
        token = ops.broadcast_to(token, (ops.shape(inputs)[0], 1, inputs.shape[-1]))
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        tokens = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], tokens, input_shape[2])
