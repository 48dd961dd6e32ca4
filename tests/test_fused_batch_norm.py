"""Our BatchNormalization (ops.batch_norm's fast paths) equals Keras's.

Keras's layer is the `keras.ops` form: the same weights must give the same
outputs, gradients and moving statistics on every backend (run this file with
KERAS_BACKEND=jax and torch too), and files saved with Keras's layer load.
"""

import keras
import numpy as np
import pytest
from helpers import input_gradient
from helpers import randomize_weights
from helpers import to_numpy
from helpers import trainable_gradients

import keras_attention
from keras_attention.layers import base
from keras_attention.layers.batch_normalization import BatchNormalization as FusedBatchNormalization
from keras_attention.models import _common


def twin_layers(shape, axis, seed=0, **kwargs):
    """Keras's BatchNormalization and ours, built, with the same random weights."""
    keras_norm = keras.layers.BatchNormalization(axis=axis, momentum=0.9, epsilon=1e-5, **kwargs)
    fused = FusedBatchNormalization(axis=axis, momentum=0.9, epsilon=1e-5, **kwargs)
    keras_norm.build(shape)
    fused.build(shape)
    randomize_weights(keras_norm, seed)
    fused.set_weights(keras_norm.get_weights())
    return keras_norm, fused


def batch(shape, seed=0):
    # Mean 2 and scale 3: the statistics differ from the moving ones.
    return np.random.default_rng(seed).normal(2.0, 3.0, size=shape).astype("float32")


CASES = [
    ((4, 5, 6, 8), -1),  # NHWC feature map: the kernels' own layout
    ((4, 8, 5, 6), 1),  # NCHW (models under channels_first)
    ((6, 8), -1),  # a pooled vector (SK's fuse step)
    ((3, 5, 8), -1),  # a strip (coordinate attention)
    ((3, 8, 5), 1),
]


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize(("shape", "axis"), CASES, ids=lambda v: str(v))
def test_equals_keras_batch_normalization(shape, axis, training):
    keras_norm, fused = twin_layers(shape, axis)
    x = batch(shape)
    np.testing.assert_allclose(
        to_numpy(fused(x, training=training)),
        to_numpy(keras_norm(x, training=training)),
        rtol=1e-5,
        atol=2e-5,
    )
    # Moving statistics after that call (momentum 0.9, biased variance).
    for ours, theirs in zip(fused.non_trainable_weights, keras_norm.non_trainable_weights):
        np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(
        trainable_gradients(fused, x, training), trainable_gradients(keras_norm, x, training)
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        input_gradient(fused, x, training),
        input_gradient(keras_norm, x, training),
        rtol=1e-4,
        atol=1e-4,
    )


def test_moving_statistics_follow_the_batch_exactly():
    # One training call from mean 0 / variance 1 with momentum 0.9: 0.1 of the
    # batch's mean and biased variance (NumPy's), as Keras's layer keeps them.
    norm = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
    x = batch((2, 3, 4, 8))
    norm(x, training=True)
    mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(to_numpy(norm.moving_mean), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(norm.moving_variance), 0.9 + 0.1 * variance, rtol=1e-5)


def test_frozen_layer_uses_its_moving_statistics_in_training():
    keras_norm, fused = twin_layers((4, 5, 6, 8), -1)
    keras_norm.trainable = fused.trainable = False
    x = batch((4, 5, 6, 8))
    np.testing.assert_allclose(
        to_numpy(fused(x, training=True)), to_numpy(keras_norm(x, training=True)), rtol=1e-5
    )
    np.testing.assert_array_equal(to_numpy(fused.moving_mean), to_numpy(keras_norm.moving_mean))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_equals_keras(policy):
    shape = (4, 5, 6, 8)
    keras_norm, fused = twin_layers(shape, -1, dtype=policy)
    x = keras.ops.cast(batch(shape), keras_norm.compute_dtype)
    ours = fused(x, training=True)
    assert keras.backend.standardize_dtype(ours.dtype) == keras_norm.compute_dtype
    np.testing.assert_allclose(to_numpy(ours), to_numpy(keras_norm(x, training=True)), atol=1e-2)
    for ours, theirs in zip(fused.non_trainable_weights, keras_norm.non_trainable_weights):
        assert keras.backend.standardize_dtype(ours.dtype) == "float32"
        np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-5, atol=1e-6)


def small_model(norm_class):
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = norm_class(momentum=0.9, epsilon=1e-5, name="norm")(x)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_jit_compiled_fit_step_equals_keras():
    x = batch((8, 6, 6, 3))
    y = np.arange(8) % 2
    models = [
        small_model(cls) for cls in (keras.layers.BatchNormalization, FusedBatchNormalization)
    ]
    models[1].set_weights(models[0].get_weights())
    for model in models:
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for ours, theirs in zip(models[1].weights, models[0].weights):
        assert ours.path == theirs.path
        np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-4, atol=1e-5)


def test_layer_saved_with_keras_batch_normalization_loads(tmp_path, monkeypatch):
    # A .keras file written before the fast path: the sublayers were Keras's own.
    x = batch((2, 9, 9, 64), seed=1)
    with monkeypatch.context() as patch:
        patch.setattr(base, "BatchNormalization", keras.layers.BatchNormalization)
        inputs = keras.Input((None, None, 64))
        old = keras.Model(inputs, keras_attention.layers.SelectiveKernel()(inputs))
        norms = [s for s in old._flatten_layers() if isinstance(s, keras.layers.BatchNormalization)]
        assert norms and all(type(s) is keras.layers.BatchNormalization for s in norms)
        randomize_weights(old)
        expected = to_numpy(old(x, training=False))
        old.save(tmp_path / "old.keras")
    loaded = keras.saving.load_model(tmp_path / "old.keras")
    norms = [s for s in loaded._flatten_layers() if isinstance(s, keras.layers.BatchNormalization)]
    assert norms and all(type(s) is FusedBatchNormalization for s in norms)
    np.testing.assert_allclose(to_numpy(loaded(x, training=False)), expected, rtol=1e-5, atol=1e-5)


def test_model_saved_with_keras_batch_normalization_loads(tmp_path, monkeypatch):
    x = batch((2, 32, 32, 3), seed=2)
    with monkeypatch.context() as patch:
        patch.setattr(_common, "BatchNormalization", keras.layers.BatchNormalization)
        old = keras_attention.models.AttentionCNN("se", input_shape=(32, 32, 3), classes=3)
        randomize_weights(old)
        expected = to_numpy(old(x, training=False))
        old.save(tmp_path / "old.keras")
    loaded = keras.saving.load_model(tmp_path / "old.keras")
    # Saved as Keras's layer, loaded as Keras's layer: the file is unchanged.
    assert any(type(s) is keras.layers.BatchNormalization for s in loaded._flatten_layers())
    np.testing.assert_allclose(to_numpy(loaded(x, training=False)), expected, rtol=1e-5, atol=1e-5)
    # And the same weights in today's model give the same outputs.
    new = keras_attention.models.AttentionCNN("se", input_shape=(32, 32, 3), classes=3)
    assert any(type(s) is FusedBatchNormalization for s in new._flatten_layers())
    new.set_weights(loaded.get_weights())
    np.testing.assert_allclose(to_numpy(new(x, training=False)), expected, rtol=1e-5, atol=1e-5)


def test_saves_and_loads_as_itself(tmp_path):
    model = small_model(FusedBatchNormalization)
    randomize_weights(model)
    x = batch((2, 6, 6, 3))
    model.save(tmp_path / "new.keras")
    loaded = keras.saving.load_model(tmp_path / "new.keras")
    assert type(loaded.get_layer("norm")) is FusedBatchNormalization
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6)
