"""from_timm: the eSE-VoVNet family, random weights saved locally, equals timm's logits.

Images are 56x40: odd map sizes after the stem exercise the ceil-mode pools.
"""

import keras
import numpy as np
import pytest
from helpers import to_numpy
from timm_reference import assert_equal_to_timm
from timm_reference import compare_with_timm
from timm_reference import random_timm_model
from timm_reference import save

from keras_attention.models import from_timm
from keras_attention.models import timm_config
from keras_attention.models.timm import vovnet

SIZE = (56, 40)


@pytest.mark.parametrize("name", sorted(vovnet.MODELS))
def test_logits_equal_timm(name, tmp_path):
    result = compare_with_timm(name, tmp_path, SIZE)
    print(
        f"{name}: params {result['params']}, ours {result['ours']:.3g}, "
        f"timm float32 {result['timm']:.3g} (max |logit| {result['scale']:.3g})"
    )
    assert_equal_to_timm(result)


def test_pipeline_of_the_default_tag():
    config = timm_config("ese_vovnet57b")
    assert config["hub_id"] == "timm/ese_vovnet57b.ra4_e3600_r256_in1k"
    assert (config["input_size"], config["crop_pct"]) == ((256, 256, 3), 0.95)
    assert config["mean"] == config["std"] == (0.5, 0.5, 0.5)
    assert timm_config("ese_vovnet39b")["crop_pct"] == 0.875


def test_missing_extra_and_misshaped_tensors_are_refused():
    reference = random_timm_model("ese_vovnet19b_dw", SIZE)
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    del state["stages.1.blocks.0.attn.fc.bias"]
    state["stem.0.extra.weight"] = np.zeros(3, "float32")
    state["stem.1.conv_dw.weight"] = state["stem.1.conv_dw.weight"][:32]
    with pytest.raises(ValueError, match="one to one") as info:
        from_timm("ese_vovnet19b_dw", checkpoint=state)
    message = str(info.value)
    assert "'stem.0.extra.weight'" in message
    assert "stages_1_blocks_0_attn: fc.bias" in message
    assert "stem.1.conv_dw.weight (32, 1, 3, 3)" in message


def test_keras_round_trip(tmp_path):
    path = save(random_timm_model("ese_vovnet19b_dw", SIZE), tmp_path / "v.safetensors")
    model = from_timm("ese_vovnet19b_dw", checkpoint=path)
    images = np.random.default_rng(2).uniform(size=(2, 40, 48, 3)).astype("float32")
    model.save(tmp_path / "vovnet.keras")
    reloaded = keras.saving.load_model(tmp_path / "vovnet.keras", safe_mode=True)
    np.testing.assert_allclose(to_numpy(reloaded(images)), to_numpy(model(images)), atol=1e-5)
