"""Synchronized BatchNormalization: statistics over the global batch under data parallelism."""

import keras


def synchronize_batch_norm(model):
    """Makes every BatchNormalization of `model` normalise over the global batch.

    Under data parallelism each replica sees a slice of the batch, and a
    BatchNormalization normalises with, and updates its moving statistics
    from, the mean and variance of its own slice: with small slices (a few
    segmentation crops per GPU) they are noisy, and training differs from the
    same run on one device. Synchronized, they are those of the global batch,
    so a data-parallel step gives the weights and moving statistics of one
    device on the whole batch.

    - TensorFlow (`tf.distribute.MirroredStrategy`,
      `MultiWorkerMirroredStrategy`): sets `synchronized=True` on every
      `keras.layers.BatchNormalization` (the package's included), also those
      inside attention layers and nested models; training then sums each
      layer's sums, sums of squares and counts across the replicas (three
      all-reduces per layer and step).
    - JAX (`keras.distribution.DataParallel`): nothing to do, and nothing is
      changed: the jitted step computes each statistic over the whole batch
      sharded across the devices (measured equal to one device's in
      `tests/test_sync_batch_norm.py`).
    - PyTorch: nothing is changed (Keras has no multi-device training there).

    The model is changed in place, its weights and optimizer kept (call it
    before `fit`; a train step traced before is dropped so that the next
    `fit` traces it again). A `.keras` file keeps `synchronized` for the model's own
    BatchNormalization layers; those inside attention layers are made again
    by their layer when it loads, unsynchronized, so call this function again
    on a reloaded model that trains data-parallel.

    Args:
        model: a Keras model or layer.

    Returns:
        `model`.

    Example:

    >>> strategy = tf.distribute.MirroredStrategy()
    >>> with strategy.scope():
    ...     model = keras_attention.models.DANet(21)
    ...     keras_attention.models.synchronize_batch_norm(model)
    ...     model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    """
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(f"`model` must be a Keras model or layer. Received: model={model!r}")  # noqa: TRY004
    if keras.backend.backend() != "tensorflow":
        return model
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
    if isinstance(model, keras.Model):
        model.train_function = None  # traced with the local statistics: retrace
    return model
