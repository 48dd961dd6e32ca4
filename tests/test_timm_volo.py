"""from_timm: the VOLO family, random weights saved locally, equals timm's logits.

The position embedding fixes the image size, so both sides are built for
48x32 images (timm's `img_size`, our `input_shape`): a 6x4 outlooker map
(3x2 window centres) and 3x2 transformer tokens, non-square on purpose. The
large nets (d3, d4, d5) and the other-resolution names (the same nets with
their own weights) run in the slow group.
"""

import keras
import numpy as np
import pytest
from helpers import to_numpy
from timm_reference import assert_equal_to_timm
from timm_reference import compare_with_timm
from timm_reference import random_timm_model

from keras_attention.models import from_timm
from keras_attention.models import timm_config
from keras_attention.models import timm_names
from keras_attention.models.timm import volo

SIZE = (48, 32)
SHAPE = (*SIZE, 3)
FAST = ("volo_d1_224", "volo_d2_224")


def _compare(name, tmp_path):
    result = compare_with_timm(
        name, tmp_path, SIZE, timm_kwargs={"img_size": SIZE}, input_shape=SHAPE
    )
    print(
        f"{name}: params {result['params']}, ours {result['ours']:.3g}, "
        f"timm float32 {result['timm']:.3g} (max |logit| {result['scale']:.3g})"
    )
    return result


@pytest.fixture(scope="module")
def d1_state():
    reference = random_timm_model("volo_d1_224", SIZE, seed=1, img_size=SIZE)
    return {k: v.numpy() for k, v in reference.state_dict().items()}


@pytest.mark.parametrize("name", FAST)
def test_logits_equal_timm(name, tmp_path):
    assert_equal_to_timm(_compare(name, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(volo.MODELS) - set(FAST)))
def test_logits_equal_timm_slow(name, tmp_path):
    assert_equal_to_timm(_compare(name, tmp_path))


def test_every_name_is_listed_with_timm_pipeline():
    assert set(volo.MODELS) <= set(timm_names())
    config = timm_config("volo_d5_512")
    assert (config["tag"], config["hub_id"]) == ("sail_in1k", "timm/volo_d5_512.sail_in1k")
    assert (config["input_size"], config["crop_pct"]) == ((512, 512, 3), 1.15)
    assert timm_config("volo_d1_224")["crop_pct"] == 0.96


def test_default_input_is_the_checkpoint_size():
    model = from_timm("volo_d1_384", pretrained=False)
    assert tuple(model.input.shape) == (None, 384, 384, 3)
    assert tuple(model.get_layer("pos_embed").embedding.shape) == (1, 24, 24, 384)
    # timm's count at 384px (sum of volo_d1_384's parameters, pretrained_cfg size).
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 26_777_960


def test_missing_extra_and_misshaped_tensors_are_refused(d1_state):
    state = dict(d1_state)
    del state["pos_embed"]
    state["post_network.0.extra.weight"] = np.zeros(3, "float32")
    state["cls_token"] = state["cls_token"][:, :, :100]
    with pytest.raises(ValueError, match="one to one") as info:
        from_timm("volo_d1_224", checkpoint=state, input_shape=SHAPE)
    message = str(info.value)
    assert "'post_network.0.extra.weight'" in message
    assert "pos_embed: " in message  # the variable that got no tensor
    assert "cls_token (1, 1, 100)" in message


def test_new_classes_replace_head_and_aux_head(d1_state, capsys):
    model = from_timm("volo_d1_224", checkpoint=d1_state, classes=5, input_shape=SHAPE)
    assert "new 5-class classifier" in capsys.readouterr().out
    assert model.output.shape == (None, 5)
    assert model.get_layer("aux_head").kernel.shape == (384, 5)
    np.testing.assert_array_equal(
        to_numpy(model.get_layer("post_network_1_attn").kv.kernel),
        d1_state["post_network.1.attn.kv.weight"].T,
    )
    headless = from_timm("volo_d1_224", checkpoint=d1_state, include_top=False, input_shape=SHAPE)
    assert headless.output.shape == (None, 1 + 3 * 2, 384)  # the class token and 3x2 tokens


def test_keras_round_trip(d1_state, tmp_path):
    model = from_timm("volo_d1_224", checkpoint=d1_state, input_shape=SHAPE)
    images = np.random.default_rng(2).uniform(size=(2, *SHAPE)).astype("float32")
    model.save(tmp_path / "volo.keras")
    reloaded = keras.saving.load_model(tmp_path / "volo.keras", safe_mode=True)
    np.testing.assert_allclose(to_numpy(reloaded(images)), to_numpy(model(images)), atol=1e-5)
