"""from_timm: the ResNet family, random weights saved locally, equals timm's logits.

Images are 56x40: odd sizes after the stem exercise the ceil-mode and padded
pools (the anti-aliased seresnextaa101d_32x8d needs sides divisible by 32, as
timm does). The shared checks (missing/extra tensors, shapes, tags, round
trip) run on resnet18; `timm_reference` makes timm's random models. The
deepest variants run in the slow group (`pytest -m slow`).
"""

import keras
import numpy as np
import pytest
from helpers import to_numpy
from timm_import import import_timm
from timm_reference import assert_equal_to_timm
from timm_reference import assert_refuses_broken_checkpoint
from timm_reference import compare_with_timm
from timm_reference import logits as _logits
from timm_reference import random_timm_model
from timm_reference import save as _save

import keras_attention
from keras_attention.models import from_timm
from keras_attention.models import timm_config
from keras_attention.models.timm import resnet

HEIGHT, WIDTH = 56, 40
# Its 2x2 average pools floor odd sizes where the average-pool-down shortcut ceils them.
SIZES = {"seresnextaa101d_32x8d": (64, 32)}
# The deepest variants: each new layout piece keeps a shallower name in CI.
SLOW = {
    "ecaresnet269d",
    "resnest200e",
    "resnest269e",
    "resnetrs101",
    "resnetrs152",
    "resnetrs200",
    "resnetrs270",
    "resnetrs350",
    "resnetrs420",
    "seresnext101_32x4d",
    "seresnext101_32x8d",
    "seresnext101d_32x8d",
}


@pytest.fixture(scope="module")
def resnet18_checkpoint(tmp_path_factory):
    model = random_timm_model("resnet18", (HEIGHT, WIDTH), seed=1)
    path = _save(model, tmp_path_factory.mktemp("timm") / "resnet18.safetensors")
    return path, model


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(resnet.MODELS)],
)
def test_logits_equal_timm(name, tmp_path):
    size = SIZES.get(name, (HEIGHT, WIDTH))
    assert_equal_to_timm(compare_with_timm(name, tmp_path, size))


def test_catalogue_has_timms_default_tag_and_preprocessing():
    """Each entry's tag, input size, crop, interpolation, mean, std and head are
    those of timm's default pretrained config (the first tag of the name)."""
    get_arch_pretrained_cfgs = import_timm().models.get_arch_pretrained_cfgs
    wrong = []
    for name in sorted(resnet.MODELS):
        cfg = next(iter(get_arch_pretrained_cfgs(name).values()))
        ours = timm_config(name)
        expected = {
            "tag": cfg.tag,
            "input_size": cfg.input_size[1:] + cfg.input_size[:1],
            "crop_pct": cfg.crop_pct,
            "interpolation": cfg.interpolation,
            "mean": tuple(cfg.mean),
            "std": tuple(cfg.std),
        }
        got = {key: ours[key] for key in expected}
        if got != expected or resnet.MODELS[name]["head"] != cfg.classifier:
            wrong.append(f"{name}: ours {got}, timm {expected}")
    assert not wrong, "\n".join(wrong)


def test_unknown_name_lists_supported_names():
    with pytest.raises(ValueError, match="resnet50d.*seresnet50") as info:
        from_timm("vit_base_patch16_224", pretrained=False)
    assert "ecaresnet26t" in str(info.value)


def test_tag_is_accepted_and_picks_the_hub_repository():
    config = timm_config("seresnet50.ra2_in1k")
    assert (config["name"], config["tag"], config["hub_id"]) == (
        "seresnet50",
        "ra2_in1k",
        "timm/seresnet50.ra2_in1k",
    )
    assert timm_config("ecaresnet50t")["input_size"] == (256, 256, 3)
    assert timm_config("resnest50d")["interpolation"] == "bilinear"


def test_missing_extra_and_misshaped_tensors_are_refused(resnet18_checkpoint):
    _, reference = resnet18_checkpoint
    assert_refuses_broken_checkpoint(
        "resnet18",
        {k: v.numpy() for k, v in reference.state_dict().items()},
        missing="layer2.0.bn1.running_var",
        unloaded="layer2_0_bn1: running_var",
        extra="layer2.0.extra.weight",
        misshaped="layer1.0.conv1.weight",
        include_preprocessing=False,
    )


def test_keras_round_trip_of_a_converted_model(resnet18_checkpoint, tmp_path):
    path, _ = resnet18_checkpoint
    model = from_timm("resnet18", checkpoint=path)
    images = np.random.default_rng(2).uniform(size=(2, 32, 48, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(to_numpy(reloaded(images)), to_numpy(model(images)), atol=1e-5)


def test_preprocessing_applies_the_checkpoint_mean_and_std(resnet18_checkpoint):
    path, reference = resnet18_checkpoint
    model = from_timm("resnet18", checkpoint=path)
    rgb = np.random.default_rng(3).uniform(size=(2, HEIGHT, WIDTH, 3)).astype("float32")
    config = timm_config("resnet18")
    normalised = (rgb - np.array(config["mean"])) / np.array(config["std"])
    expected = _logits(reference, normalised.transpose(0, 3, 1, 2).astype("float32"))
    np.testing.assert_allclose(to_numpy(model(rgb)), expected, rtol=1e-4, atol=1e-4)


def test_new_classes_replace_the_classifier_only(resnet18_checkpoint, capsys):
    path, _ = resnet18_checkpoint
    full = from_timm("resnet18", checkpoint=path)
    model = from_timm("resnet18", checkpoint=path, classes=5)
    assert "new 5-class classifier" in capsys.readouterr().out
    assert model.output.shape == (None, 5)
    np.testing.assert_array_equal(
        to_numpy(model.get_layer("layer4_1_conv2").kernel),
        to_numpy(full.get_layer("layer4_1_conv2").kernel),
    )
    headless = from_timm("resnet18", checkpoint=path, include_top=False, pooling="avg")
    assert headless.output.shape == (None, 512)


def test_architecture_only_and_bad_checkpoint():
    model = from_timm("resnest14d", pretrained=False, classes=3, input_shape=(32, 32, 3))
    assert model.output.shape == (None, 3)
    assert any(isinstance(layer, keras_attention.SplitAttention) for layer in model.layers)
    with pytest.raises(FileNotFoundError, match="does not exist.*checkpoint="):
        from_timm("resnet18", checkpoint="/nonexistent.safetensors")


def test_input_range_0_255_gives_the_0_1_models_logits(resnet18_checkpoint):
    path, _ = resnet18_checkpoint
    unit = from_timm("resnet18", checkpoint=path)
    bytes_model = from_timm("resnet18", checkpoint=path, input_range=(0, 255))
    # The summary says the range: the check layer is named after it.
    assert unit.get_layer("input_range_0_to_1").high == 1.0
    assert bytes_model.get_layer("input_range_0_to_255").high == 255.0
    rgb = np.random.default_rng(4).uniform(size=(2, HEIGHT, WIDTH, 3)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(bytes_model(rgb * 255)), to_numpy(unit(rgb)), rtol=1e-4, atol=1e-4
    )


def _batches():
    rgb = np.random.default_rng(5).uniform(size=(2, 32, 32, 3)).astype("float32")
    config = timm_config("resnet18")
    normalised = (rgb - np.array(config["mean"], "float32")) / np.array(config["std"], "float32")
    return rgb, {"0-255": rgb * 255, "normalised": normalised}


@pytest.mark.parametrize("kind", ["0-255", "normalised"])
def test_out_of_range_batch_is_refused_in_eager_calls(kind):
    model = from_timm("resnet18", pretrained=False, input_shape=(32, 32, 3))
    rgb, wrong = _batches()
    assert model(rgb).shape == (2, 1000)
    with pytest.raises(ValueError, match=r"takes RGB images in \[0, 1\]"):
        model(wrong[kind])


def test_out_of_range_batch_cannot_pass_predict_unnoticed():
    """Compiled (TensorFlow, JAX): NaN outputs; eager (PyTorch): the ValueError."""
    model = from_timm("resnet18", pretrained=False, input_shape=(32, 32, 3))
    rgb, wrong = _batches()
    assert np.isfinite(model.predict(rgb, verbose=0)).all()
    try:
        outputs = model.predict(wrong["0-255"], verbose=0)
    except ValueError as error:
        assert "0-255 images?" in str(error)
    else:
        assert np.isnan(outputs).all()


def test_saved_model_keeps_its_input_range(resnet18_checkpoint, tmp_path):
    path, _ = resnet18_checkpoint
    model = from_timm("resnet18", checkpoint=path, input_range=(0, 255))
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    rgb = np.random.default_rng(6).uniform(0, 255, size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(reloaded(rgb)), to_numpy(model(rgb)), atol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        reloaded(rgb * 255)


@pytest.mark.parametrize("input_range", [(1, 0), (0,), "0-255", (0, float("inf")), (True, 2)])
def test_bad_input_range_is_refused(input_range):
    with pytest.raises(ValueError, match="input_range="):
        from_timm("resnet18", pretrained=False, input_range=input_range)


def test_input_range_needs_the_models_preprocessing():
    with pytest.raises(ValueError, match="include_preprocessing=False"):
        from_timm("resnet18", pretrained=False, include_preprocessing=False, input_range=(0, 255))
