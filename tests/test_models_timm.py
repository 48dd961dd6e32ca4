"""from_timm: every supported timm model, random weights saved locally, equals timm's logits.

Offline: timm builds each model with pretrained=False; its weights are
randomised (BatchNorm affine parameters too, and the running statistics
calibrated on random images so that activations stay O(1) through 100+
layers), saved as .safetensors and loaded with `from_timm`. Images are
56x40: odd sizes after the stem exercise the ceil-mode and padded pools.
"""

import keras
import numpy as np
import pytest
import torch
from helpers import to_numpy
from timm_import import import_timm

import keras_attention
from keras_attention.models import from_timm
from keras_attention.models import timm_config
from keras_attention.models import timm_names

HEIGHT, WIDTH = 56, 40


def _images(seed=0):
    return np.random.default_rng(seed).normal(size=(2, 3, HEIGHT, WIDTH)).astype("float32")


def _random_timm_model(name, seed=0):
    timm = import_timm()
    model = timm.create_model(name, pretrained=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if param.ndim == 1:  # BN/LayerNorm affine and biases: nothing left at 0 or 1
                if key.endswith("weight"):
                    param.copy_(torch.rand(param.shape, generator=generator) + 0.5)
                else:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = 1.0  # running statistics := one random batch's
        model.train()
        model(torch.randn(4, 3, HEIGHT, WIDTH, generator=generator))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                # Four images at the last stages' 2x1 maps give noisy variances:
                # inflate them so that the random network stays well-conditioned
                # (1e-5 float32 rounding is not amplified past 1e-4 by 150 layers).
                module.running_var.add_(module.running_var.mean())
    return model.eval()


def _save(model, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _logits(model, images):
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


def _trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(scope="module")
def resnet18_checkpoint(tmp_path_factory):
    model = _random_timm_model("resnet18", seed=1)
    path = _save(model, tmp_path_factory.mktemp("timm") / "resnet18.safetensors")
    return path, model


@pytest.mark.parametrize("name", timm_names())
def test_logits_equal_timm(name, tmp_path):
    reference = _random_timm_model(name)
    path = _save(reference, tmp_path / f"{name}.safetensors")
    images = _images()
    expected = _logits(reference, images)
    model = from_timm(name, checkpoint=path, include_preprocessing=False)
    logits = to_numpy(model(images.transpose(0, 2, 3, 1)))
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()
    assert _trainable_count(model) == sum(p.numel() for p in reference.parameters())


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


def test_missing_and_extra_tensors_raise_listing_them(resnet18_checkpoint):
    _, reference = resnet18_checkpoint
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    del state["layer2.0.bn1.running_var"]
    state["layer2.0.extra.weight"] = np.zeros(3, "float32")
    with pytest.raises(ValueError, match="unmatched") as info:
        from_timm("resnet18", checkpoint=state, include_preprocessing=False)
    assert "layer2.0.extra.weight" in str(info.value)
    assert "layer2_0_bn1: running_var" in str(info.value)


def test_wrong_shape_raises(resnet18_checkpoint):
    _, reference = resnet18_checkpoint
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"][:32]
    with pytest.raises(ValueError, match="wrong shapes.*layer1.0.conv1.weight"):
        from_timm("resnet18", checkpoint=state, include_preprocessing=False)


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
    with pytest.raises(ValueError, match="checkpoint"):
        from_timm("resnet18", checkpoint="/nonexistent.safetensors")
