"""The layer contract (DESIGN.md) for AttentionGate, the one layer with two inputs [x, g].

test_layer_contract.py builds one input per case; rather than thread a second
input through each of its checks (and the TFLite test that reads its CASES),
this module runs the same checks with the pair. Keep it in step with that one.
Mixed precision is checked with the other layers in test_mixed_precision_contract.py.
"""

import keras
import numpy as np
import pytest
from deployment import litert_interpreter
from helpers import randomize_weights
from helpers import to_numpy
from helpers import trainable_gradients

import keras_attention
from keras_attention.layers import AttentionGate

BATCH, HEIGHT, WIDTH, CHANNELS, GATING = 2, 6, 10, 8, 12  # non-square on purpose
KWARGS = {"inter_channels": 4}


def pair(height=HEIGHT, width=WIDTH, scale=1.0, channels_first=False, seed=0):
    """x at (height, width) and g at half of it, as a U-Net decoder has them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, height, width, CHANNELS)).astype("float32") * scale
    g = rng.normal(size=(BATCH, height // 2, width // 2, GATING)).astype("float32") * scale
    if channels_first:
        return [np.transpose(t, (0, 3, 1, 2)) for t in (x, g)]
    return [x, g]


def symbolic_pair():
    return [keras.Input((None, None, CHANNELS)), keras.Input((None, None, GATING))]


def built_randomized(**overrides):
    layer = AttentionGate(**{**KWARGS, **overrides})
    layer(pair(channels_first=layer.data_format == "channels_first"))
    randomize_weights(layer)
    return layer


def test_output_shape_on_non_square_input():
    layer = AttentionGate(**KWARGS)
    inputs = pair()
    y = layer(inputs)
    assert tuple(y.shape) == tuple(layer.compute_output_shape([t.shape for t in inputs]))
    assert tuple(y.shape) == inputs[0].shape


def test_dynamic_spatial_size():
    inputs = symbolic_pair()
    model = keras.Model(inputs, AttentionGate(**KWARGS)(inputs))
    for height, width in ((5, 7), (8, 6)):
        y = model.predict(pair(height, width), verbose=0)
        assert tuple(y.shape[1:3]) == (height, width)


def test_config_round_trip():
    layer = built_randomized()
    config = layer.get_config()
    clone = AttentionGate.from_config(config)
    assert clone.get_config() == config
    inputs = pair()
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(clone(inputs)), to_numpy(layer(inputs)), 1e-5, 1e-5)


def test_keras_file_round_trip_in_safe_mode(tmp_path):
    inputs = symbolic_pair()
    layer = AttentionGate(**KWARGS)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[-1]) is AttentionGate
    assert loaded.layers[-1].get_config() == layer.get_config()
    np.testing.assert_allclose(to_numpy(loaded(pair())), to_numpy(model(pair())), 1e-6, 1e-6)


def test_gradients_reach_every_trainable_weight():
    layer = built_randomized()
    gradients = trainable_gradients(layer, pair())
    assert len(gradients) == len(layer.trainable_weights) > 0
    for weight, gradient in zip(layer.trainable_weights, gradients):
        assert gradient is not None, weight.path
        assert np.abs(gradient).max() > 0, f"zero gradient for {weight.path}"


def test_channels_first_matches_channels_last():
    last = built_randomized(data_format="channels_last")
    first = AttentionGate(**KWARGS, data_format="channels_first")
    first(pair(channels_first=True))
    first.set_weights(last.get_weights())
    expected = to_numpy(last(pair(seed=3)))
    actual = to_numpy(first(pair(seed=3, channels_first=True)))
    np.testing.assert_allclose(np.transpose(actual, (0, 2, 3, 1)), expected, 1e-4, 1e-4)


def test_global_channels_first_is_followed():
    keras.config.set_image_data_format("channels_first")  # conftest restores it
    layer = AttentionGate(**KWARGS)
    assert layer.data_format == "channels_first"
    inputs = pair(channels_first=True)
    y = layer(inputs)
    assert tuple(y.shape) == inputs[0].shape


def test_fit_step_with_jit_compile():
    inputs = [
        keras.Input((HEIGHT, WIDTH, CHANNELS)),
        keras.Input((HEIGHT // 2, WIDTH // 2, GATING)),
    ]
    pooled = keras.layers.GlobalAveragePooling2D()(AttentionGate(**KWARGS)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(pooled))
    jit = "auto" if keras.backend.backend() == "torch" else True
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
    history = model.fit(pair(), np.zeros((BATCH, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_return_attention():
    layer = built_randomized()
    inputs = pair()
    outputs, alpha = layer(inputs, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), to_numpy(layer(inputs)), 1e-6, 1e-6)
    assert tuple(alpha.shape) == (BATCH, HEIGHT, WIDTH, 1)
    symbolic = layer(symbolic_pair(), return_attention=True)
    assert isinstance(symbolic, tuple) and len(symbolic) == 2


@pytest.mark.parametrize("which", [0, 1])
def test_rank_3_input_raises(which):
    inputs = pair()
    inputs[which] = inputs[which][0]
    with pytest.raises(ValueError, match=r"4-D"):
        AttentionGate(**KWARGS)(inputs)


def test_one_input_raises():
    with pytest.raises(ValueError, match=r"\[x, g\]"):
        AttentionGate(**KWARGS)(pair()[0])


def test_bad_arguments_raise():
    for name, value in {"inter_channels": 0, "sub_sample": 0, "data_format": "NHWC"}.items():
        with pytest.raises(ValueError, match=f"`{name}`"):
            AttentionGate(**{name: value})


@pytest.mark.parametrize(
    "x_shape, sub_sample", [((1, 3, 4, CHANNELS), 4), ((1, 4, 1, CHANNELS), 2)]
)
def test_map_smaller_than_sub_sample_raises_at_build(x_shape, sub_sample):
    # Before: a backend shape error (theta's output is empty) deep inside `call`.
    g = np.zeros((1, 2, 2, GATING), "float32")
    message = rf"`sub_sample`.*sub_sample={sub_sample}.*height {x_shape[1]} and width {x_shape[2]}"
    with pytest.raises(ValueError, match=message):
        AttentionGate(sub_sample=sub_sample)([np.zeros(x_shape, "float32"), g])


def test_map_smaller_than_sub_sample_raises_after_build():
    layer = AttentionGate(**KWARGS)
    layer(pair())
    with pytest.raises(ValueError, match=r"`sub_sample`.*height 1 and width 8"):
        layer([np.zeros((BATCH, 1, 8, CHANNELS), "float32"), pair()[1]])


def test_registered_and_exported():
    assert keras_attention.AttentionGate is AttentionGate
    assert keras.saving.get_registered_name(AttentionGate) == "keras_attention>AttentionGate"
    assert AttentionGate.__doc__ and "Reference" in AttentionGate.__doc__
    assert keras_attention.registry.get_class("attention_gate") is AttentionGate


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite runs on TensorFlow")
def test_converts_to_tflite_with_builtin_ops(tmp_path):
    import tensorflow as tf

    inputs = [keras.Input((8, 10, CHANNELS)), keras.Input((4, 5, GATING))]
    layer = AttentionGate(**KWARGS)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    model.export(str(tmp_path), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = litert_interpreter(converter.convert())
    x, g = pair(8, 10)
    runner = interpreter.get_signature_runner()
    names = list(runner.get_input_details())
    by_shape = {
        n: (x if runner.get_input_details()[n]["shape"][-1] == CHANNELS else g) for n in names
    }
    (result,) = runner(**by_shape).values()
    np.testing.assert_allclose(result, to_numpy(model([x, g])), rtol=1e-5, atol=1e-5)
