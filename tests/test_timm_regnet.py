"""from_timm: the RegNetY and RegNetZ families, random weights saved locally, equal timm's logits.

Images are 48x40: after five stride-2 stages the maps are 2x2, odd sizes on
the way (3x3 at stride 16). The largest networks' logit checks are in the
slow group (`pytest -m slow`); their architecture is still checked here
against timm's own width generation and configs, at no cost.
"""

import keras
import numpy as np
import pytest
from helpers import to_numpy
from timm_import import import_timm
from timm_reference import assert_equal_to_timm
from timm_reference import compare_with_timm
from timm_reference import random_timm_model

from keras_attention.models import from_timm
from keras_attention.models import timm_config
from keras_attention.models import timm_names
from keras_attention.models.timm import regnet
from keras_attention.models.timm import regnetz

SIZE = (48, 40)
# Logit checks beyond CI's budget (tens of millions of parameters; run with -m slow).
SLOW = {
    "regnety_032",
    "regnety_040",
    "regnety_064",
    "regnety_080",
    "regnety_120",
    "regnety_160",
    "regnety_320",
    "regnetz_d32",
    "regnetz_e8",
}
NAMES = sorted(regnet.MODELS) + sorted(regnetz.MODELS)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NAMES]
)
def test_logits_equal_timm(name, tmp_path):
    result = compare_with_timm(name, tmp_path, SIZE)
    print(
        f"{name}: params ours {result['params'][0]:,} timm {result['params'][1]:,}; "
        f"max error vs float64: ours {result['ours']:.3g}, timm float32 {result['timm']:.3g}"
    )
    assert_equal_to_timm(result)


def test_every_name_is_listed():
    assert set(NAMES) <= set(timm_names())


@pytest.mark.parametrize("name", sorted(regnet.MODELS))
def test_stage_widths_are_timms_generation(name):
    timm = import_timm()
    reference = timm.models.regnet.model_cfgs[name]
    config = regnet.MODELS[name]["build"].args[0]
    assert (config.w0, config.wa, config.wm, config.depth, config.group_size) == (
        reference.w0,
        reference.wa,
        reference.wm,
        reference.depth,
        reference.group_size,
    )
    assert (config.se_ratio, config.stem_width) == (reference.se_ratio, reference.stem_width)
    widths, _, groups = timm.models.regnet.generate_regnet(
        reference.wa, reference.w0, reference.wm, reference.depth, reference.group_size
    )
    stage_widths, depths = np.unique(widths, return_counts=True)
    stage_widths, groups = timm.models.regnet.adjust_widths_groups_comp(
        stage_widths.tolist(), [1.0] * len(groups), groups
    )
    assert regnet.stage_layout(config) == list(
        zip(stage_widths, depths.tolist(), groups, strict=True)
    )


@pytest.mark.parametrize("name", sorted(regnetz.MODELS))
def test_regnetz_configs_are_timms(name):
    reference = import_timm().models.byobnet.model_cfgs[name]
    config = regnetz.MODELS[name]["build"].args[0]
    blocks = reference.blocks
    assert config.depths == tuple(b.d for b in blocks)
    assert config.widths == tuple(b.c for b in blocks)
    assert [config.first_stride, 2, 2, 2] == [b.s for b in blocks]
    assert {config.group_size} == {b.gs for b in blocks}
    assert {config.bottle_ratio} == {b.br for b in blocks}
    assert (config.num_features, config.stem_width) == (reference.num_features, reference.stem_chs)
    assert config.stem == reference.stem_type
    assert reference.block_kwargs == {"bottle_in": True, "linear_out": True}
    assert (reference.downsample, reference.stem_pool, reference.act_layer) == ("", "", "silu")
    assert (reference.attn_layer, reference.attn_kwargs) == ("se", {"rd_ratio": 0.25})


@pytest.mark.parametrize("name", NAMES)
def test_every_tag_has_timms_pipeline(name):
    timm = import_timm()
    default = timm.models.get_pretrained_cfg(name)
    assert timm_config(name)["tag"] == default.tag
    for full_name in timm.list_pretrained(f"{name}.*"):
        expected = timm.models.get_pretrained_cfg(full_name)
        config = timm_config(full_name)
        assert config["hub_id"] == expected.hf_hub_id, full_name
        height, width = expected.input_size[1:]
        assert config["input_size"] == (height, width, 3), full_name
        assert config["crop_pct"] == expected.crop_pct, full_name
        assert config["interpolation"] == expected.interpolation, full_name
        assert (config["mean"], config["std"]) == (expected.mean, expected.std), full_name


def test_in12k_tags():
    config = timm_config("regnety_120.sw_in12k_ft_in1k")
    assert (config["hub_id"], config["input_size"], config["crop_pct"]) == (
        "timm/regnety_120.sw_in12k_ft_in1k",
        (224, 224, 3),
        0.95,
    )
    assert timm_config("regnety_160.lion_in12k_ft_in1k")["hub_id"] == (
        "timm/regnety_160.lion_in12k_ft_in1k"
    )
    # Other tags of the same network are evaluated otherwise.
    assert timm_config("regnety_160.swag_ft_in1k")["input_size"] == (384, 384, 3)
    assert timm_config("regnety_120.pycls_in1k")["crop_pct"] == 0.875


@pytest.fixture(scope="module", params=["regnety_002", "regnetz_b16"])
def smallest(request):
    """(name, timm's random model) of each family's smallest network."""
    return request.param, random_timm_model(request.param, SIZE, seed=1)


def test_missing_extra_and_misshaped_tensors_are_refused(smallest):
    name, reference = smallest
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    prefix = "s2.b1" if name.startswith("regnety") else "stages.1.0"
    se = "se" if name.startswith("regnety") else "attn"
    del state[f"{prefix}.{se}.fc1.bias"]
    state[f"{prefix}.extra.weight"] = np.zeros(3, "float32")
    key = f"{prefix}.{se}.fc2.weight"
    state[key] = state[key][:8]
    with pytest.raises(ValueError, match="unmatched") as info:
        from_timm(name, checkpoint=state, include_preprocessing=False)
    message = str(info.value)
    assert f"{prefix}.extra.weight" in message
    assert f"{prefix.replace('.', '_')}_{se}: fc1.bias" in message
    assert f"wrong shapes: ['{key}" in message


def test_keras_round_trip(smallest, tmp_path):
    name, reference = smallest
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    model = from_timm(f"{name}.{timm_config(name)['tag']}", checkpoint=state)
    images = np.random.default_rng(2).uniform(size=(2, *SIZE, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(to_numpy(reloaded(images)), to_numpy(model(images)), atol=1e-5)
