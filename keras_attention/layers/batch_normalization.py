"""Keras's BatchNormalization, computed through the backend's fused kernel."""

import keras
from keras import ops

from keras_attention import ops as ka_ops


@keras.saving.register_keras_serializable(package="keras_attention")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose arithmetic runs in one fused kernel.

    The same layer as Keras's (its arguments, weights, weight names, moving
    statistics updated with `momentum` from the biased batch variance, float32
    arithmetic under mixed precision), with the normalisation itself in
    `keras_attention.ops.batch_norm`: TensorFlow's `FusedBatchNormV3` in
    training mode and PyTorch's `native_batch_norm` (the kernel timm's
    BatchNorm2d runs), one pass over the map forward and one backward instead
    of Keras's chain of moments, subtract, multiply and add and their
    gradients. JAX keeps Keras's form (XLA fuses it). Masks, `renorm` and
    `synchronized=True` on TensorFlow go through Keras's own `call`.

    `synchronized=True` (see `keras_attention.models.synchronize_batch_norm`)
    takes the statistics over the global batch: on TensorFlow by Keras's
    all-reduce across the replicas of a `tf.distribute` strategy. Unlike
    Keras's class, this one accepts it on every backend, so that a model
    saved with it on TensorFlow loads on JAX and PyTorch: there it changes
    nothing, as JAX's statistics under `keras.distribution.DataParallel` are
    those of the global batch already (its jitted step sees the whole sharded
    batch) and Keras has no multi-device training on PyTorch.

    Weights saved by `keras.layers.BatchNormalization` load into it and give
    the same outputs to float32 rounding, and back. It keeps Keras's class
    name on purpose: `.keras` files name the sublayers that a layer holds in
    a list by their class (`batch_normalization`, `batch_normalization_1`),
    so another name would orphan the weights of files saved before it; it is
    registered as "keras_attention>BatchNormalization".

    Args:
        **kwargs: those of `keras.layers.BatchNormalization`.

    Example:

    >>> norm = BatchNormalization(momentum=0.9, epsilon=1e-5)
    >>> norm(keras.ops.ones((2, 4, 4, 8)), training=True).shape
    (2, 4, 4, 8)
    """

    def __init__(self, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        self.synchronized = bool(synchronized)  # Keras refuses it off TensorFlow

    def _moments(self, inputs, mask):
        if mask is None and not _all_reduces(self.synchronized):
            return ops.moments(inputs, axes=self._reduction_axes)
        return super()._moments(inputs, mask)

    def call(self, inputs, training=None, mask=None):
        if mask is not None or self.renorm or _all_reduces(self.synchronized):
            return super().call(inputs, training=training, mask=mask)
        # As Keras does: the arithmetic in (at least) float32.
        dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = ops.cast(inputs, dtype)
        gamma = ops.cast(self.gamma, dtype) if self.scale else None
        beta = ops.cast(self.beta, dtype) if self.center else None
        moving_mean = ops.cast(self.moving_mean, dtype)
        moving_variance = ops.cast(self.moving_variance, dtype)
        training = bool(training) and self.trainable
        outputs, mean, variance = ka_ops.batch_norm(
            x,
            moving_mean,
            moving_variance,
            gamma,
            beta,
            axis=self.axis,
            epsilon=self.epsilon,
            training=training,
        )
        if training:
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                moving_variance * self.momentum + variance * (1.0 - self.momentum)
            )
        return ops.cast(outputs, self.compute_dtype)


def _all_reduces(synchronized):
    """Whether `synchronized` means an all-reduce of the statistics: on TensorFlow only."""
    return synchronized and keras.backend.backend() == "tensorflow"
