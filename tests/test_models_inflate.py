"""models.inflate: I3D's boring-video property, the inflated weights, and refusals by name."""

import keras
import numpy as np
import pytest
from helpers import to_numpy
from test_volume_invariance import NOT_INVARIANT

from keras_attention import available
from keras_attention import models
from keras_attention import registry
from keras_attention.layers import SqueezeExcitation
from keras_attention.models import ResNet50
from keras_attention.models import from_timm
from keras_attention.models import inflate

DEPTH = 4


def randomize_statistics(model, seed=0):
    """BatchNormalization's moving statistics and affine weights made non-trivial."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if "variance" in weight.path:
            weight.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif weight.path.endswith(("gamma", "beta", "moving_mean")):
            weight.assign(rng.uniform(-0.5, 0.5, shape).astype("float32"))


def boring_clip(images, depth=DEPTH):
    return np.repeat(images[:, None], depth, axis=1)


def assert_boring_video_property(image_model, video_model, size=32, depth=DEPTH):
    # RGB in [0, 1]: what from_timm models take (their InputRange refuses others).
    images = np.random.default_rng(1).uniform(size=(2, size, size, 3)).astype("float32")
    expected = to_numpy(image_model(images, training=False))
    actual = to_numpy(video_model(boring_clip(images, depth), training=False))
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def spatial_same_convs(t):
    """time_kernel: t for 'same'-padded convs wider than 1x1, 1 for the rest."""
    return lambda layer: t if layer.padding == "same" and max(layer.kernel_size) > 1 else 1


@pytest.fixture(scope="module")
def se_resnet50():
    model = ResNet50(attention="se", input_shape=(32, 32, 3), classes=5)
    randomize_statistics(model)
    return model


def test_se_resnet50_repeat_keeps_the_logits(se_resnet50):
    video = inflate(se_resnet50)  # t = 1: every conv 1 x k x k
    assert video.input.shape == (None, None, 32, 32, 3)
    assert any(isinstance(layer, SqueezeExcitation) for layer in video.layers)
    assert_boring_video_property(se_resnet50, video)


def test_se_resnet50_centre_3x3x3_with_a_depth_stride(se_resnet50):
    video = inflate(
        se_resnet50,
        time_kernel=spatial_same_convs(3),
        time_stride=lambda layer: 2 if layer.name == "pool1_pool" else 1,
        mode="centre",
    )
    conv = video.get_layer("conv2_block1_2_conv")
    assert tuple(conv.kernel.shape[:3]) == (3, 3, 3)
    assert tuple(video.get_layer("pool1_pool").strides) == (2, 2, 2)
    assert_boring_video_property(se_resnet50, video)


@pytest.fixture(scope="module")
def timm_resnet18():
    model = from_timm("resnet18", pretrained=False, classes=5, input_shape=(32, 32, 3))
    randomize_statistics(model, seed=3)
    return model


def test_timm_resnet18_repeat(timm_resnet18):
    video = inflate(timm_resnet18)
    assert_boring_video_property(timm_resnet18, video)


def test_timm_resnet18_centre_with_padded_depth(timm_resnet18):
    # timm pads explicitly before 'valid' convs: the padding gains depth (1, 1) for
    # 3-deep kernels, so the clip keeps its depth through the residual blocks.
    video = inflate(
        timm_resnet18,
        time_kernel=lambda layer: 3 if max(layer.kernel_size) > 1 else 1,
        mode="centre",
    )
    assert tuple(video.get_layer("layer1_0_conv1_pad").padding[0]) == (1, 1)
    assert tuple(video.get_layer("maxpool_pad").padding[0]) == (0, 0)  # feeds pooling
    features = keras.Model(video.input, video.get_layer("layer1_0_conv2").output)
    assert features(boring_clip(np.zeros((1, 32, 32, 3), "float32"))).shape[1] == DEPTH
    assert_boring_video_property(timm_resnet18, video)


@pytest.mark.parametrize("name", ["regnety_002", "seresnext26d_32x4d"])
def test_timm_families_with_grouped_convolutions_and_se(name):
    # GroupedConv2D -> a grouped Conv3D; timm's SE -> the package's SqueezeExcitation in 3-D.
    model = from_timm(name, pretrained=False, classes=5, input_shape=(32, 32, 3))
    randomize_statistics(model, seed=4)
    video = inflate(
        model,
        time_kernel=lambda layer: 3 if max(layer.kernel_size) > 1 else 1,
        mode="centre",
    )
    grouped = [layer for layer in video.layers if getattr(layer, "groups", 1) > 1]
    assert grouped and all(isinstance(layer, keras.layers.Conv3D) for layer in grouped)
    assert_boring_video_property(model, video)


# ResNet50(attention=a) for every single-input attention with a 3-D form, except those
# whose 3-D form is not the 2-D one on a boring clip (NOT_INVARIANT, with why) and those
# whose 3-D form holds other weights (REFUSED: inflate names them). A fast set runs in CI.
REFUSED = {
    "coord": "its 3-D form has a third gate, along depth, with weights of its own",
    "stn": "its 3-D form regresses a 3x4 affine theta (12 numbers), the 2-D form a 2x3 one",
}
FAST_ATTENTIONS = ("cbam", "eca")


def resnet_attention_params():
    params = []
    for name in available():
        cls = registry.get_class(name)
        two_inputs = name == "attention_gate"  # gates a skip by a second tensor
        if 3 not in cls.spatial_ranks or two_inputs or name in ("se", *REFUSED):
            continue  # "se": the se_resnet50 tests above
        if cls.__name__ in NOT_INVARIANT:
            continue
        marks = () if name in FAST_ATTENTIONS else pytest.mark.slow
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("attention", resnet_attention_params())
def test_resnet50_with_each_3d_attention_keeps_the_logits(attention):
    model = ResNet50(attention=attention, input_shape=(32, 32, 3), classes=5)
    randomize_statistics(model, seed=2)
    video = inflate(model, time_kernel=spatial_same_convs(3), mode="centre")
    block = video.get_layer("conv2_block1_attention")
    assert type(block) is registry.get_class(attention) and block.spatial_rank == 3
    assert_boring_video_property(model, video)


@pytest.mark.parametrize("attention", sorted(REFUSED))
def test_attention_whose_3d_form_has_other_weights_is_refused_by_name(attention):
    model = small_model(registry.get_class(attention)(name="attention"), filters=16)
    with pytest.raises(ValueError, match=r"'attention' \(.*other weights"):
        inflate(model)


# One from_timm network per family (and per attention module of timm's ResNet) whose
# layers all have 3-D forms; resnet18, regnety_002 and seresnext26d run above.
# name -> (the package layer that must appear in 3-D, time stride of a layer).
TIMM_FAMILIES = [
    pytest.param(
        "skresnet18",
        "SelectiveKernel",
        # The SK layers stride depth with their own stride 2: so must the shortcuts.
        lambda layer: 2 if "downsample" in layer.name else 1,
        id="skresnet18-sk",
    ),
    pytest.param("resnest14d", "SplitAttention", 1, id="resnest14d-split"),
    pytest.param("ecaresnet26t", "EfficientChannelAttention", 1, id="ecaresnet26t-eca"),
    pytest.param("gcresnext26ts", "GlobalContext", 1, id="gcresnext26ts-byobnet-gc"),
    pytest.param("ese_vovnet19b_dw", "EffectiveSqueezeExcitation", 1, id="vovnet-ese"),
    pytest.param("regnetz_b16", "SqueezeExcitation", 1, id="regnetz_b16-se"),
    pytest.param("resnetrs50", "SqueezeExcitation", 1, id="resnetrs50-se", marks=pytest.mark.slow),
    pytest.param(
        "eca_resnext26ts",
        "EfficientChannelAttention",
        1,
        id="eca_resnext26ts-byobnet-eca",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("name, attention, time_stride", TIMM_FAMILIES)
def test_timm_family_keeps_the_logits(name, attention, time_stride):
    model = from_timm(name, pretrained=False, classes=5, input_shape=(32, 32, 3))
    randomize_statistics(model, seed=4)
    video = inflate(
        model,
        time_kernel=lambda layer: 3 if max(layer.kernel_size) > 1 else 1,
        time_stride=time_stride,
        mode="centre",
    )
    inflated = [layer for layer in video.layers if type(layer).__name__ == attention]
    assert inflated and all(layer.spatial_rank == 3 for layer in inflated)
    assert_boring_video_property(model, video, depth=8)


@pytest.mark.parametrize(
    "name, layer",
    [
        ("botnet26t_256", r"'stages_2_1_self_attn' \(BottleneckSelfAttention\)"),
        ("lambda_resnet26t", r"'stages_2_1_self_attn' \(LambdaLayer\)"),
        ("volo_d1_224", r"'network_0_0_attn' \(OutlookAttention\)"),
    ],
    ids=["botnet", "lambda", "volo"],
)
def test_timm_family_with_2d_only_layers_is_refused_by_name(name, layer):
    model = from_timm(name, pretrained=False, classes=5, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=layer + ".*no 3-D form"):
        inflate(model)


@pytest.mark.parametrize("mode", ["repeat", "centre"])
def test_kernels_are_inflated_as_asked(se_resnet50, mode):
    video = inflate(se_resnet50, time_kernel=3, mode=mode)
    kernel = to_numpy(se_resnet50.get_layer("conv2_block1_2_conv").kernel)
    inflated = to_numpy(video.get_layer("conv2_block1_2_conv").kernel)
    assert inflated.shape == (3, *kernel.shape)
    if mode == "repeat":
        for tap in inflated:
            np.testing.assert_allclose(tap, kernel / 3, rtol=1e-6)
    else:
        np.testing.assert_array_equal(inflated[1], kernel)
        assert not inflated[[0, 2]].any()
    # Weights of per-channel layers are copied.
    for name in ("conv2_block1_2_bn", "predictions"):
        for a, b in zip(se_resnet50.get_layer(name).weights, video.get_layer(name).weights):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def small_model(middle, filters=6):
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(filters, 3, padding="same", name="conv")(inputs)
    x = middle(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))


def test_inflated_model_saves_and_trains(tmp_path):
    model = small_model(SqueezeExcitation(name="se"))
    video = inflate(model, time_kernel=3)
    path = tmp_path / "video.keras"
    video.save(path)
    loaded = keras.saving.load_model(path)
    clip = np.random.default_rng(0).normal(size=(2, 3, 8, 8, 4)).astype("float32")
    np.testing.assert_allclose(to_numpy(loaded(clip)), to_numpy(video(clip)), 1e-6, 1e-6)
    video.compile(optimizer="sgd", loss="mse")
    history = video.fit(clip, np.zeros((2, 2)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_package_conv2d_inflates_to_the_package_conv3d():
    from keras_attention.models import conv

    inputs = keras.Input((8, 8, 4))
    x = conv.Conv2D(6, 3, padding="same", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x))
    video = inflate(model, time_kernel=3, mode="centre")
    assert type(video.get_layer("conv")) is conv.Conv3D
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(video(boring_clip(images))), to_numpy(model(images)), rtol=1e-5, atol=1e-6
    )


def head_model(last):
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(last(x)))


@pytest.mark.parametrize(
    "model, pattern",
    [
        (lambda: head_model(keras.layers.Flatten(name="flat")), r"'flat' \(Flatten\)"),
        (
            lambda: head_model(keras.layers.Reshape((8, 48), name="tokens")),
            r"'tokens' \(Reshape\)",
        ),
        (
            lambda: small_model(keras.layers.Lambda(lambda t: t * 2, name="double")),
            r"'double' \(Lambda\)",
        ),
    ],
)
def test_layer_without_a_known_3d_form_is_named(model, pattern):
    with pytest.raises(ValueError, match=pattern):
        inflate(model())


def test_image_only_attention_layer_is_named_with_its_reason():
    from keras_attention.layers import FrequencyChannelAttention

    model = small_model(FrequencyChannelAttention(name="fca"), filters=16)
    with pytest.raises(ValueError, match=r"'fca' \(FrequencyChannelAttention\).*no 3-D form"):
        inflate(model)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"mode": "inflate"}, "mode"),
        ({"time_kernel": 0}, "time_kernel"),
        ({"time_stride": 1.5}, "time_stride"),
        ({"time_kernel": lambda layer: 0}, "time_kernel"),
    ],
)
def test_bad_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        inflate(small_model(keras.layers.ReLU(name="relu")), **kwargs)


def test_non_functional_or_volume_models_are_refused():
    with pytest.raises(ValueError, match="`model`"):
        inflate(keras.layers.Dense(2))
    volume_input = keras.Input((4, 4, 4, 1))
    volume = keras.Model(volume_input, keras.layers.Conv3D(2, 1)(volume_input))
    with pytest.raises(ValueError, match="4-D images"):
        inflate(volume)


def test_exported():
    assert models.inflate is inflate
