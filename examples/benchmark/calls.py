"""Compiled calls of one layer, per backend: `forward()` and `train()` run one call each.

Each returns only when its call is done. The loss of the backward pass is `sum(outputs)`
in float32: its gradient flows through the whole layer to the input and every trainable
weight, as inside a network.
"""

import contextlib
import inspect

import keras

import keras_attention

from .machine import sync
from .settings import BASELINE
from .settings import IDENTITY


def make_layer(name, kwargs, channels, rank=2):
    """Our layer `name`, or the baseline (a 1x1 or 1x1x1 convolution: `rank` 2 or 3)."""
    if name == BASELINE:
        conv = keras.layers.Conv3D if rank == 3 else keras.layers.Conv2D
        return conv(channels, 1, use_bias=False, name=BASELINE)
    if name == IDENTITY:
        return keras.layers.Identity(name=IDENTITY)
    return keras_attention.get(name, **kwargs)


@contextlib.contextmanager
def keras_batch_norm():
    """Layers and models built inside hold `keras.layers.BatchNormalization` (no fast path).

    The package creates every BatchNormalization through `layers.base.batch_norm` and
    `models._common.batch_norm`, which look the class up at call time.
    """
    from keras_attention.layers import base
    from keras_attention.models import _common

    fused = base.BatchNormalization
    base.BatchNormalization = _common.BatchNormalization = keras.layers.BatchNormalization
    try:
        yield
    finally:
        base.BatchNormalization = _common.BatchNormalization = fused


def holds_fused_batch_norm(layer):
    """Whether `layer` (built) has one of the package's fused BatchNormalization sublayers."""
    from keras_attention.layers.batch_normalization import BatchNormalization

    return any(isinstance(s, BatchNormalization) for s in layer._flatten_layers())


# Row-name suffix of the layers and models timed with Keras's BatchNormalization.
KERAS_BN = " (Keras BN)"


def random_input(shape, seed=0):
    """A normal input in the policy's compute dtype, created on the default device."""
    x = keras.random.normal(shape, seed=seed)
    return keras.ops.cast(x, keras.config.dtype_policy().compute_dtype)


def _sum_loss(outputs):
    return keras.ops.sum(keras.ops.cast(outputs, "float32"))


def compiled_calls(layer, x, jit):
    # Build on one sample: layers with fixed sizes (BoT, halo blocks, axial span)
    # accept only the measured spatial size.
    layer(x[:1])
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_calls(layer, x, jit)
    if backend == "jax":
        return _jax_calls(layer, x)
    if backend == "torch":
        return _torch_calls(layer, x)
    raise NotImplementedError(f"No benchmark for the {backend!r} backend")


def _tensorflow_calls(layer, x, jit):
    import tensorflow as tf

    weights = layer.trainable_variables

    @tf.function(jit_compile=jit)
    def forward(x):
        return layer(x, training=False)

    @tf.function(jit_compile=jit)
    def train(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _sum_loss(layer(x, training=True))
        return tape.gradient(loss, [x, *weights])

    def run_forward():
        out = forward(x)
        sync()
        return out

    def run_train():
        out = train(x)
        sync()
        return out

    return run_forward, run_train


def _jax_calls(layer, x):
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    # Unlike __call__, stateless_call passes `training` on even to layers without it.
    takes_training = "training" in inspect.signature(layer.call).parameters

    def call(trainable, non_trainable, x, training):
        kwargs = {"training": training} if takes_training else {}
        return layer.stateless_call(trainable, non_trainable, x, **kwargs)

    @jax.jit
    def forward(trainable, non_trainable, x):
        return call(trainable, non_trainable, x, False)[0]

    def loss(trainable, non_trainable, x):
        outputs, updated = call(trainable, non_trainable, x, True)
        return _sum_loss(outputs), updated

    gradients = jax.jit(jax.grad(loss, argnums=(0, 2), has_aux=True))
    return (
        lambda: jax.block_until_ready(forward(trainable, non_trainable, x)),
        lambda: jax.block_until_ready(gradients(trainable, non_trainable, x)),
    )


def _torch_calls(layer, x):
    import torch

    def run_forward():
        with torch.no_grad():
            out = layer(x, training=False)
        sync()
        return out

    def run_train():
        for variable in layer.trainable_variables:
            variable.value.grad = None
        leaf = x.detach().requires_grad_(True)
        _sum_loss(layer(leaf, training=True)).backward()
        sync()
        return leaf.grad

    return run_forward, run_train
