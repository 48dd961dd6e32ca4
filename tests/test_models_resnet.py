"""ResNet builders: parameter counts against the papers/torchvision, attention placement,
the `attention` argument, dynamic sizes, `.keras` round trips and mixed precision."""

import math

import keras
import numpy as np
import pytest
from helpers import to_numpy
from model_checks import assert_keras_round_trip
from model_checks import random_images
from model_checks import trainable_count

from keras_attention import layers
from keras_attention import models
from keras_attention.models import _common

# Trainable parameters with 1000 classes: torchvision's resnet18/34/50/101.
TORCHVISION = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160}
# Channels seen by the attention layer of each ResNet-50 block (16 blocks).
RESNET50_BLOCK_CHANNELS = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
SMALL = {"input_shape": (32, 32, 3), "classes": 10}


@pytest.fixture(scope="module")
def resnet50():
    return models.ResNet50()


@pytest.fixture(scope="module")
def se_resnet50():
    return models.ResNet50(attention="se")


@pytest.mark.parametrize("depth", [18, 34, 101])
def test_plain_parameter_counts_match_torchvision(depth):
    model = getattr(models, f"ResNet{depth}")()
    assert trainable_count(model) == TORCHVISION[depth]


def test_resnet50_parameter_count_and_stride_placement(resnet50):
    assert resnet50.name == "resnet50"
    assert trainable_count(resnet50) == TORCHVISION[50]
    # v1.5: the downsampling block strides on its 3x3 conv, not on the first 1x1.
    assert resnet50.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert resnet50.get_layer("conv3_block1_2_conv").strides == (2, 2)
    convs = [layer for layer in resnet50.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 53 and not any(conv.use_bias for conv in convs)


def test_se_resnet50_adds_the_papers_parameters(se_resnet50):
    # Hu et al.: SE-ResNet-50 has 28.09M parameters; per block 2*C*C/16 + C/16 + C.
    se = sum(2 * c * (c // 16) + c // 16 + c for c in RESNET50_BLOCK_CHANNELS)
    assert se == 2_530_992
    assert trainable_count(se_resnet50) == TORCHVISION[50] + se == 28_088_024


def test_se_sits_after_the_last_bn_before_the_addition(se_resnet50):
    attention = [l for l in se_resnet50.layers if isinstance(l, layers.SqueezeExcitation)]
    assert len(attention) == 16
    block = "conv4_block3"
    layer = se_resnet50.get_layer(f"{block}_attention")
    assert layer.input is se_resnet50.get_layer(f"{block}_3_bn").output
    assert layer.output is se_resnet50.get_layer(f"{block}_add").input[1]


def test_eca_resnet50_adds_the_adaptive_kernel_sizes():
    def k(channels):  # ECA-Net eq. 12 with gamma=2, b=1, written out here
        t = int(abs((math.log2(channels) + 1) / 2))
        return t if t % 2 else t + 1

    added = sum(k(c) for c in RESNET50_BLOCK_CHANNELS)
    assert added == 86
    model = models.ResNet50(attention="eca")
    assert model.name == "eca_resnet50"
    assert trainable_count(model) == TORCHVISION[50] + added


def test_cbam_resnet50_parameter_count():
    # Woo et al. report 28.09M: SE's MLPs plus a 7x7x2 conv (98) and BN (2) per block.
    model = models.ResNet50(attention="cbam")
    assert trainable_count(model) == 28_088_024 + 16 * 100


@pytest.mark.parametrize(
    "attention, name, cls",
    [
        ("ECA", "eca_resnet18", layers.EfficientChannelAttention),
        (layers.SqueezeExcitation, "se_resnet18", layers.SqueezeExcitation),
        (lambda: layers.SqueezeExcitation(reduction=4), "se_resnet18", layers.SqueezeExcitation),
        ("none", "resnet18", None),
        (None, "resnet18", None),
    ],
    ids=["name", "class", "factory", "none-str", "none"],
)
def test_attention_argument_forms(attention, name, cls):
    model = models.ResNet18(attention=attention, **SMALL)
    assert model.name == name
    found = [l for l in model.layers if cls is not None and isinstance(l, cls)]
    assert len(found) == (8 if cls else 0)
    assert len({id(l) for l in found}) == len(found)  # one layer per block
    if callable(attention) and not isinstance(attention, type):
        assert all(l.reduction == 4 for l in found)


@pytest.mark.parametrize(
    "attention",
    ["squeeze", 3, lambda: "se"],
    ids=["unknown-name", "int", "factory-not-layer"],
)
def test_bad_attention_raises(attention):
    with pytest.raises(ValueError, match="attention"):
        models.ResNet18(attention=attention, **SMALL)


def test_factory_returning_the_same_layer_raises():
    shared = layers.SqueezeExcitation()
    with pytest.raises(ValueError, match="new Keras layer"):
        models.ResNet18(attention=lambda: shared, **SMALL)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pooling": "mean", "include_top": False}, "pooling"),
        ({"input_shape": (32, 32)}, "input_shape"),
        ({"input_shape": (32, 32, None)}, "input_shape"),
        ({"classes": 0}, "classes"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.ResNet18(**{**SMALL, **kwargs})


def test_headless_outputs():
    x = random_images((1, 32, 64, 3))
    features = models.ResNet18(input_shape=(None, None, 3), include_top=False)
    assert tuple(features(x).shape) == (1, 1, 2, 512)  # stride 32
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        pooled = models.ResNet18(input_shape=(None, None, 3), include_top=False, pooling=pooling)
        pooled.set_weights(features.get_weights())
        expected = reduce(to_numpy(features(x, training=False)), axis=(1, 2))
        actual = to_numpy(pooled(x, training=False))
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_dynamic_spatial_size():
    model = models.ResNet18(attention="se", input_shape=(None, None, 3), classes=10)
    for shape in ((1, 32, 32, 3), (1, 48, 40, 3)):
        assert tuple(model.predict(random_images(shape), verbose=0).shape) == (shape[0], 10)


def test_keras_round_trip(tmp_path):
    model = models.ResNet18(attention="se", **SMALL)
    assert_keras_round_trip(model, random_images((2, 32, 32, 3)), tmp_path)


def test_mixed_bfloat16_gives_float32_logits():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = models.ResNet18(attention="se", **SMALL)
    assert model.get_layer("conv1_conv").compute_dtype == "bfloat16"
    logits = model(random_images((2, 32, 32, 3)), training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert np.isfinite(to_numpy(logits)).all()


def test_channels_first_matches_channels_last():
    last = models.ResNet18(attention="se", input_shape=(None, None, 3), classes=10)
    keras.config.set_image_data_format("channels_first")
    if not _common.channels_first_runs():  # e.g. TensorFlow on a CPU without oneDNN
        with pytest.raises(ValueError, match="cannot run NCHW"):
            models.ResNet18(attention="se", input_shape=(3, None, None), classes=10)
        return
    first = models.ResNet18(attention="se", input_shape=(3, None, None), classes=10)
    first.set_weights(last.get_weights())
    x = random_images((1, 32, 40, 3))
    np.testing.assert_allclose(
        to_numpy(first(np.transpose(x, (0, 3, 1, 2)), training=False)),
        to_numpy(last(x, training=False)),
        rtol=1e-4,
        atol=1e-4,
    )
