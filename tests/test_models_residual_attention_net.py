"""Residual Attention Networks: parameter counts against the paper, layout, dynamic
sizes, `.keras` round trip and mixed precision."""

import keras
import numpy as np
import pytest
from helpers import to_numpy
from model_checks import assert_keras_round_trip
from model_checks import random_images
from model_checks import trainable_count

from keras_attention import layers
from keras_attention import models

PAPER = {56: 31.9e6, 92: 51.3e6}  # Wang et al. 2017, Table 4
MODULES = {56: (1, 1, 1), 92: (1, 2, 3)}


def unit(c_in, c_out):
    """Pre-activation bottleneck: BNs (2 params/channel), three convs, projection if needed."""
    inner = c_out // 4
    bns = 2 * (c_in + inner + inner)
    convs = c_in * inner + 9 * inner * inner + inner * c_out
    return bns + convs + (c_in * c_out if c_in != c_out else 0)


def attention_module(c, mask_depth):
    """p=1 + t=2 + p=1 units, 2 * depth mask units, mask 2x(BN + 1x1 conv) + final bias."""
    return (4 + 2 * mask_depth) * unit(c, c) + 2 * (2 * c + c * c) + c


def expected_count(depth):
    count = 7 * 7 * 3 * 64 + 2 * 64  # stem conv + BN
    count += unit(64, 256) + unit(256, 512) + unit(512, 1024)
    count += unit(1024, 2048) + 2 * unit(2048, 2048) + 2 * 2048  # + final BN
    for modules, c, mask_depth in zip(MODULES[depth], (256, 512, 1024), (3, 2, 1)):
        count += modules * attention_module(c, mask_depth)
    return count + 2048 * 1000 + 1000


@pytest.fixture(scope="module")
def attention56():
    return models.ResidualAttentionNet56()


@pytest.fixture(scope="module")
def attention92():
    return models.ResidualAttentionNet92()


@pytest.mark.parametrize("depth", [56, 92])
def test_parameter_count_is_within_two_percent_of_the_paper(depth, request):
    model = request.getfixturevalue(f"attention{depth}")
    count = trainable_count(model)
    assert count == expected_count(depth)
    assert abs(count - PAPER[depth]) / PAPER[depth] < 0.02


@pytest.mark.parametrize("depth", [56, 92])
def test_layout(depth, request):
    model = request.getfixturevalue(f"attention{depth}")
    assert model.name == f"residual_attention_net{depth}"
    modules = [l for l in model.layers if isinstance(l, layers.ResidualAttention)]
    per_stage = [sum(l.name.startswith(f"stage{s}_") for l in modules) for s in (1, 2, 3)]
    assert per_stage == list(MODULES[depth])
    for module in modules:
        stage = int(module.name[len("stage")])
        assert (module.depth, module.p, module.t, module.r) == (4 - stage, 1, 2, 1)
    # Table 2's resolutions at 224x224: 56, 28, 14 in the stages, 7 at the end.
    sizes = [model.get_layer(f"stage{s}_attention1").output.shape[1] for s in (1, 2, 3)]
    assert sizes == [56, 28, 14]
    assert model.get_layer("post_relu").output.shape[1:] == (7, 7, 2048)


@pytest.fixture(scope="module")
def small_attention56():
    return models.ResidualAttentionNet56(input_shape=(None, None, 3), classes=10, small_input=True)


def test_small_input_layout_at_two_sizes(small_attention56):
    model = small_attention56
    assert not any(isinstance(l, keras.layers.MaxPooling2D) for l in model.layers)
    stem = model.get_layer("conv1_conv")
    assert (stem.kernel_size, stem.strides) == ((3, 3), (1, 1))
    # Stride 8 overall; called eagerly, as tracing this model twice takes long.
    features = keras.Model(model.input, model.get_layer("post_relu").output)
    for shape, expected in (((2, 16, 16, 3), (2, 2, 2)), ((1, 24, 40, 3), (1, 3, 5))):
        assert tuple(features(random_images(shape), training=False).shape) == (*expected, 2048)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="pooling"):
        models.ResidualAttentionNet56(include_top=False, pooling="sum")
    with pytest.raises(ValueError, match="classes"):
        models.ResidualAttentionNet92(classes=-1)


def test_keras_round_trip(small_attention56, tmp_path):
    assert_keras_round_trip(small_attention56, random_images((1, 16, 16, 3)), tmp_path)


def test_mixed_bfloat16_gives_float32_logits():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = models.ResidualAttentionNet56(input_shape=(16, 16, 3), classes=10, small_input=True)
    logits = model(random_images((1, 16, 16, 3)), training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert np.isfinite(to_numpy(logits)).all()
