"""Backend-agnostic test helpers: random weights, gradients, NumPy conversion."""

import inspect

import keras
import numpy as np


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")))


def randomize_weights(layer, seed=0):
    """Replaces every weight with random values so that no path is silenced.

    Initial weights hide bugs: gamma=0 and zero-initialised BN make attention
    blocks the identity. Variances stay positive.
    """
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        shape = tuple(weight.shape)
        if "variance" in weight.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.uniform(-0.5, 0.5, shape)
        weight.assign(value.astype(weight.dtype))


def images(shape, scale=1.0, seed=0):
    """Normal float32 inputs of `shape` (times `scale`), the same for a given `seed`."""
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype("float32")


def randomized_layer(cls, shape, **kwargs):
    """`cls(**kwargs)` built on `images(shape)`, with its weights randomized."""
    layer = cls(**kwargs)
    layer(images(shape))
    randomize_weights(layer)
    return layer


def trainable_gradients(layer, x, training=True):
    """Gradients of a random projection of the layer's output w.r.t. its trainable weights."""
    backend = keras.backend.backend()
    rng = np.random.default_rng(1)
    out_shape = tuple(keras.ops.shape(layer(x, training=training)))
    projection = keras.ops.convert_to_tensor(rng.normal(size=out_shape).astype("float32"))

    def loss_of(out):
        return keras.ops.sum(keras.ops.cast(out, "float32") * projection)

    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(layer(x, training=training))
        return [
            to_numpy(g) if g is not None else None
            for g in tape.gradient(loss, layer.trainable_weights)
        ]
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        # stateless_call passes `training` on even to layers whose call lacks it.
        takes_training = "training" in inspect.signature(layer.call).parameters
        kwargs = {"training": training} if takes_training else {}

        def loss_fn(tv):
            out, _ = layer.stateless_call(tv, non_trainable, x, **kwargs)
            return loss_of(out)

        return [to_numpy(g) for g in jax.grad(loss_fn)(trainable)]
    if backend == "torch":
        layer.zero_grad()
        loss_of(layer(x, training=training)).backward()
        return [
            to_numpy(v.value.grad) if v.value.grad is not None else None
            for v in layer.trainable_variables
        ]
    raise NotImplementedError(backend)


def input_gradient(layer, x, training=True):
    """Gradient of a random projection of the layer's output w.r.t. its input `x`.

    For parameter-free layers (SimAM), whose only gradient path is the input.
    """
    backend = keras.backend.backend()
    rng = np.random.default_rng(1)
    projection = rng.normal(size=tuple(keras.ops.shape(layer(x, training=training))))
    projection = keras.ops.convert_to_tensor(projection.astype("float32"))

    def loss_of(out):
        return keras.ops.sum(keras.ops.cast(out, "float32") * projection)

    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_of(layer(x, training=training))
        return to_numpy(tape.gradient(loss, x))
    if backend == "jax":
        import jax

        return to_numpy(jax.grad(lambda v: loss_of(layer(v, training=training)))(x))
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        loss_of(layer(x, training=training)).backward()
        return to_numpy(x.grad)
    raise NotImplementedError(backend)
