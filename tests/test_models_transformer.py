"""The transformer parts of VOLO: equal to timm's modules, serializable, checked inputs."""

import keras
import numpy as np
import pytest
import torch
from helpers import images
from helpers import randomize_weights
from helpers import to_numpy
from timm_import import import_timm

from keras_attention.models.transformer import ClassAttention
from keras_attention.models.transformer import ClassToken
from keras_attention.models.transformer import MultiHeadSelfAttention
from keras_attention.models.transformer import PositionEmbedding


def _copy_dense(torch_linear, dense):
    """timm's nn.Linear weights into a Keras Dense: (out, in) -> (in, out)."""
    with torch.no_grad():
        torch_linear.weight.copy_(torch.from_numpy(to_numpy(dense.kernel).T.copy()))
        if torch_linear.bias is not None:
            torch_linear.bias.copy_(torch.from_numpy(to_numpy(dense.bias)))


def _timm_volo():
    import_timm()
    from timm.models import volo

    return volo


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_self_attention_equals_timm(qkv_bias):
    tokens = images((2, 6, 32))
    layer = MultiHeadSelfAttention(num_heads=4, qkv_bias=qkv_bias)
    layer(tokens)
    randomize_weights(layer)
    reference = _timm_volo().Attention(32, num_heads=4, qkv_bias=qkv_bias).eval()
    _copy_dense(reference.qkv, layer.qkv)
    _copy_dense(reference.proj, layer.proj)
    with torch.no_grad():  # timm's module takes a (B, H, W, C) map
        expected = reference(torch.from_numpy(tokens.reshape(2, 2, 3, 32))).numpy()
    np.testing.assert_allclose(to_numpy(layer(tokens)), expected.reshape(2, 6, 32), atol=1e-5)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_class_attention_equals_timm(qkv_bias):
    tokens = images((2, 7, 32), seed=1)
    layer = ClassAttention(num_heads=2, qkv_bias=qkv_bias)
    layer(tokens)
    randomize_weights(layer)
    reference = _timm_volo().ClassAttention(32, num_heads=2, qkv_bias=qkv_bias).eval()
    for name in ("q", "kv", "proj"):
        _copy_dense(getattr(reference, name), getattr(layer, name))
    with torch.no_grad():
        expected = reference(torch.from_numpy(tokens)).numpy()
    outputs = to_numpy(layer(tokens))
    assert outputs.shape == (2, 1, 32)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)


def test_class_token_and_position_embedding_values():
    tokens = images((2, 3, 4), seed=2)
    prepend = ClassToken()
    prepend(tokens)
    prepend.token.assign(np.arange(4, dtype="float32").reshape(1, 1, 4))
    outputs = to_numpy(prepend(tokens))
    np.testing.assert_array_equal(outputs[:, 0], np.tile(np.arange(4.0), (2, 1)))
    np.testing.assert_array_equal(outputs[:, 1:], tokens)

    grid = images((2, 3, 2, 4), seed=3)
    embed = PositionEmbedding()
    embed(grid)
    table = images((1, 3, 2, 4), seed=4)
    embed.embedding.assign(table)
    np.testing.assert_allclose(to_numpy(embed(grid)), grid + table, rtol=1e-6)


def test_saved_model_with_every_part_reloads_in_safe_mode(tmp_path):
    inputs = keras.Input((2, 3, 8))
    x = PositionEmbedding()(inputs)
    x = keras.layers.Reshape((6, 8))(x)
    x = MultiHeadSelfAttention(num_heads=2, qkv_bias=True)(x)
    x = ClassToken()(x)
    outputs = ClassAttention(num_heads=4)(x)
    model = keras.Model(inputs, outputs)
    assert model.output.shape == (None, 1, 8)
    randomize_weights(model)
    grid = images((2, 2, 3, 8))
    model.save(tmp_path / "parts.keras")
    reloaded = keras.saving.load_model(tmp_path / "parts.keras", safe_mode=True)
    np.testing.assert_allclose(to_numpy(reloaded(grid)), to_numpy(model(grid)), atol=1e-6)
    assert reloaded.layers[3].get_config()["qkv_bias"] is True


def test_attention_under_mixed_precision_is_finite():
    tokens = images((2, 5, 16), scale=50.0)
    for cls in (MultiHeadSelfAttention, ClassAttention):
        layer = cls(num_heads=2, dtype="mixed_float16")
        outputs = layer(tokens)
        assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
        assert np.isfinite(to_numpy(outputs)).all()


def _rounded_to_bfloat16(x):
    return to_numpy(keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32"))


@pytest.mark.parametrize("cls", [MultiHeadSelfAttention, ClassAttention])
def test_bfloat16_loses_little_more_than_rounding(cls):
    # As the layers' mixed precision contract asks: within 8x the deviation
    # that rounding the weights and inputs to bfloat16 alone gives (its
    # FLOOR_RATIO). TensorFlow would form the logits in bfloat16 without
    # `_heads.attend`'s float32.
    tokens = images((2, 49, 64))
    exact = cls(num_heads=4)
    exact(tokens)
    randomize_weights(exact, seed=1)
    expected = to_numpy(exact(tokens))
    low = cls(num_heads=4, dtype="mixed_bfloat16")
    low(tokens)
    low.set_weights(exact.get_weights())
    rounded = cls(num_heads=4)
    rounded(tokens)
    rounded.set_weights([_rounded_to_bfloat16(w) for w in exact.get_weights()])
    floor = np.abs(to_numpy(rounded(_rounded_to_bfloat16(tokens))) - expected).max()
    deviation = np.abs(to_numpy(low(tokens)).astype("float32") - expected).max()
    assert deviation <= 8 * floor, (deviation, floor)


@pytest.mark.parametrize("cls", [MultiHeadSelfAttention, ClassAttention])
def test_bad_arguments_and_inputs_raise(cls):
    with pytest.raises(ValueError, match="num_heads=0"):
        cls(num_heads=0)
    with pytest.raises(ValueError, match="qkv_bias=1"):
        cls(num_heads=2, qkv_bias=1)
    with pytest.raises(ValueError, match="num_heads=3"):
        cls(num_heads=3)(images((1, 4, 16)))
    with pytest.raises(ValueError, match=r"\(batch, N, C\)"):
        cls(num_heads=2)(images((1, 2, 2, 16)))


def test_bad_inputs_of_token_and_embedding_raise():
    with pytest.raises(ValueError, match=r"\(batch, N, C\)"):
        ClassToken()(images((1, 2, 2, 4)))
    with pytest.raises(ValueError, match="every size but the batch"):
        PositionEmbedding()(keras.Input((None, 4, 8)))
