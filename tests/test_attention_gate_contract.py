"""The layer contract (DESIGN.md) for AttentionGate, the one layer with two inputs [x, g].

test_layer_contract.py builds one input per case; rather than thread a second
input through each of its checks (and the TFLite test that reads its CASES),
this module runs the same checks with the pair. Keep it in step with that one.
Mixed precision is checked with the other layers in test_mixed_precision_contract.py.
Each check runs on images (rank 2) and on volumes (rank 3: x and g 5-D, a small
DEPTH x HEIGHT x WIDTH clip with g at half of it, as in the 3-D CT network).
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
DEPTH = 4  # volumes: 4 x 6 x 10, g at 2 x 3 x 5
KWARGS = {"inter_channels": 4}
RANKS = pytest.mark.parametrize("rank", [2, 3], ids=["2d", "3d"])


def pair(height=HEIGHT, width=WIDTH, scale=1.0, channels_first=False, seed=0, depth=None):
    """x at (height, width) and g at half of it, as a U-Net decoder has them.

    With `depth`, 5-D volumes: x at (depth, height, width), g at half of each.
    """
    rng = np.random.default_rng(seed)
    spatial = (height, width) if depth is None else (depth, height, width)
    x = rng.normal(size=(BATCH, *spatial, CHANNELS)).astype("float32") * scale
    g_spatial = tuple(size // 2 for size in spatial)
    g = rng.normal(size=(BATCH, *g_spatial, GATING)).astype("float32") * scale
    if channels_first:
        order = (0, len(spatial) + 1, *range(1, len(spatial) + 1))
        return [np.transpose(t, order) for t in (x, g)]
    return [x, g]


def rank_pair(rank, **kwargs):
    """`pair` for images (rank 2) or volumes (rank 3)."""
    return pair(depth=DEPTH if rank == 3 else None, **kwargs)


def symbolic_pair(rank=2):
    spatial = (None,) * rank
    return [keras.Input((*spatial, CHANNELS)), keras.Input((*spatial, GATING))]


def built_randomized(rank=2, **overrides):
    layer = AttentionGate(**{**KWARGS, **overrides})
    layer(rank_pair(rank, channels_first=layer.data_format == "channels_first"))
    randomize_weights(layer)
    return layer


@RANKS
def test_output_shape_on_non_square_input(rank):
    layer = AttentionGate(**KWARGS)
    inputs = rank_pair(rank)
    y = layer(inputs)
    assert tuple(y.shape) == tuple(layer.compute_output_shape([t.shape for t in inputs]))
    assert tuple(y.shape) == inputs[0].shape


@RANKS
def test_dynamic_spatial_size(rank):
    inputs = symbolic_pair(rank)
    model = keras.Model(inputs, AttentionGate(**KWARGS)(inputs))
    for height, width in ((5, 7), (8, 6)):
        y = model.predict(rank_pair(rank, height=height, width=width), verbose=0)
        spatial = (height, width) if rank == 2 else (DEPTH, height, width)
        assert tuple(y.shape[1:-1]) == spatial


@RANKS
def test_config_round_trip(rank):
    layer = built_randomized(rank)
    config = layer.get_config()
    clone = AttentionGate.from_config(config)
    assert clone.get_config() == config
    inputs = rank_pair(rank)
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(clone(inputs)), to_numpy(layer(inputs)), 1e-5, 1e-5)


@RANKS
def test_keras_file_round_trip_in_safe_mode(tmp_path, rank):
    inputs = symbolic_pair(rank)
    layer = AttentionGate(**KWARGS)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[-1]) is AttentionGate
    assert loaded.layers[-1].get_config() == layer.get_config()
    data = rank_pair(rank)
    np.testing.assert_allclose(to_numpy(loaded(data)), to_numpy(model(data)), 1e-6, 1e-6)


@RANKS
def test_gradients_reach_every_trainable_weight(rank):
    layer = built_randomized(rank)
    gradients = trainable_gradients(layer, rank_pair(rank))
    assert len(gradients) == len(layer.trainable_weights) > 0
    for weight, gradient in zip(layer.trainable_weights, gradients):
        assert gradient is not None, weight.path
        assert np.abs(gradient).max() > 0, f"zero gradient for {weight.path}"


@RANKS
def test_channels_first_matches_channels_last(rank):
    last = built_randomized(rank, data_format="channels_last")
    first = AttentionGate(**KWARGS, data_format="channels_first")
    first(rank_pair(rank, channels_first=True))
    first.set_weights(last.get_weights())
    expected = to_numpy(last(rank_pair(rank, seed=3)))
    actual = to_numpy(first(rank_pair(rank, seed=3, channels_first=True)))
    np.testing.assert_allclose(np.moveaxis(actual, 1, -1), expected, 1e-4, 1e-4)


@RANKS
def test_global_channels_first_is_followed(rank):
    keras.config.set_image_data_format("channels_first")  # conftest restores it
    layer = AttentionGate(**KWARGS)
    assert layer.data_format == "channels_first"
    inputs = rank_pair(rank, channels_first=True)
    y = layer(inputs)
    assert tuple(y.shape) == inputs[0].shape


@RANKS
def test_fit_step_with_jit_compile(rank):
    data = rank_pair(rank)
    inputs = [keras.Input(t.shape[1:]) for t in data]
    pooling = {2: keras.layers.GlobalAveragePooling2D, 3: keras.layers.GlobalAveragePooling3D}
    pooled = pooling[rank]()(AttentionGate(**KWARGS)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(pooled))
    jit = "auto" if keras.backend.backend() == "torch" else True
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
    history = model.fit(data, np.zeros((BATCH, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@RANKS
def test_return_attention(rank):
    layer = built_randomized(rank)
    inputs = rank_pair(rank)
    outputs, alpha = layer(inputs, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), to_numpy(layer(inputs)), 1e-6, 1e-6)
    assert tuple(alpha.shape) == inputs[0].shape[:-1] + (1,)
    symbolic = layer(symbolic_pair(rank), return_attention=True)
    assert isinstance(symbolic, tuple) and len(symbolic) == 2


@pytest.mark.parametrize("which", [0, 1])
def test_rank_3_input_raises(which):
    inputs = pair()
    inputs[which] = inputs[which][0]
    with pytest.raises(ValueError, match=r"4-D"):
        AttentionGate(**KWARGS)(inputs)


@pytest.mark.parametrize("which", [0, 1])
def test_mixed_ranks_raise(which):
    # One image and one volume: the gate needs x and g of the same rank.
    inputs = pair()
    inputs[which] = rank_pair(3)[which]
    with pytest.raises(ValueError, match=r"4-D|5-D"):
        AttentionGate(**KWARGS)(inputs)


def test_rank_6_input_raises():
    inputs = [t[:, None] for t in rank_pair(3)]
    with pytest.raises(ValueError, match=r"5-D volumes"):
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


def test_volume_thinner_than_sub_sample_raises():
    # Theta's window is sub_sample^3 on volumes: depth counts too.
    x = np.zeros((1, 1, 4, 4, CHANNELS), "float32")
    g = np.zeros((1, 1, 2, 2, GATING), "float32")
    message = r"`sub_sample` x `sub_sample` x `sub_sample`.*depth 1, height 4 and width 4"
    with pytest.raises(ValueError, match=message):
        AttentionGate(sub_sample=2)([x, g])


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
@RANKS
def test_converts_to_tflite_with_builtin_ops(tmp_path, rank):
    import tensorflow as tf

    x, g = rank_pair(rank, height=8, width=10)
    inputs = [keras.Input(x.shape[1:]), keras.Input(g.shape[1:])]
    layer = AttentionGate(**KWARGS)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    model.export(str(tmp_path), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = litert_interpreter(converter.convert())
    runner = interpreter.get_signature_runner()
    names = list(runner.get_input_details())
    by_shape = {
        n: (x if runner.get_input_details()[n]["shape"][-1] == CHANNELS else g) for n in names
    }
    (result,) = runner(**by_shape).values()
    np.testing.assert_allclose(result, to_numpy(model([x, g])), rtol=1e-5, atol=1e-5)
