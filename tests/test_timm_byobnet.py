"""from_timm: timm's ByobNet family (byobnet.py, byoanet.py), random weights, equals timm.

The convolutional nets run at 40x32 (odd maps after the stem and the stages
exercise the padded convs and the stem's max pool). Self-attention fixes or
constrains the size: BoTNet's and the global lambda layer's embeddings are
built for the test's size (timm's `img_size=` on both sides), and HaloNet's
8x8 blocks need maps that 8 divides at every halo stage (256 with a halo
block in the last stage, 128 otherwise).
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
from keras_attention.models.timm import byobnet

CONV_SIZE = (40, 32)
# Input sides of the self-attention nets; the *_256 names fix theirs with img_size.
ATTENTION_SIZES = {
    "botnet26t_256": 64,
    "sebotnet33ts_256": 64,
    "eca_botnext26ts_256": 64,
    "lambda_resnet26rpt_256": 64,
    "halo2botnet50ts_256": 128,
    "halonet26t": 256,
    "sehalonet33ts": 256,
    "eca_halonext26ts": 256,
    "halonet50ts": 256,
}
# The longest checks (50-layer nets, 256px HaloNets): `pytest -m slow`.
SLOW = {"gcresnext50ts", "halonet50ts", "sehalonet33ts", "halonet26t"}


def _case(name):
    return pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name


@pytest.mark.parametrize("name", [_case(name) for name in sorted(byobnet.MODELS)])
def test_logits_equal_timm(name, tmp_path):
    side = ATTENTION_SIZES.get(name)
    size = (side, side) if side else CONV_SIZE
    kwargs = {}
    if name.endswith("_256"):  # fixed-size nets: timm's img_size, our input_shape
        kwargs = {"timm_kwargs": {"img_size": side}, "input_shape": (side, side, 3)}
    result = compare_with_timm(name, tmp_path, size, **kwargs)
    errors = f"ours {result['ours']:.3g}, timm {result['timm']:.3g}"
    print(f"{name}: params {result['params']}, {errors}")  # the figures, with -s
    assert_equal_to_timm(result)


def test_names_and_pipelines_are_timms():
    timm = import_timm()
    assert set(byobnet.MODELS) <= set(timm_names())
    for name in byobnet.MODELS:
        expected = timm.models.get_pretrained_cfg(name)
        config = timm_config(name)
        assert config["tag"] == expected.tag, name
        assert config["hub_id"] == f"timm/{name}.{expected.tag}"
        assert config["input_size"] == expected.input_size[1:] + expected.input_size[:1]
        assert config["crop_pct"] == expected.crop_pct, name
        assert config["interpolation"] == expected.interpolation, name
        assert (config["mean"], config["std"]) == (expected.mean, expected.std), name


@pytest.fixture(scope="module")
def smallest_state():
    """The state dict of the family's smallest model, eca_resnext26ts, random weights."""
    reference = random_timm_model("eca_resnext26ts", CONV_SIZE, seed=1)
    return {k: v.numpy() for k, v in reference.state_dict().items()}


def test_missing_extra_and_misshaped_tensors_raise_listing_them(smallest_state):
    state = dict(smallest_state)
    del state["stages.1.0.attn.conv.weight"]
    state["stages.1.0.attn.extra"] = np.zeros(3, "float32")
    state["stages.2.1.conv2_kxk.conv.weight"] = state["stages.2.1.conv2_kxk.conv.weight"][:8]
    with pytest.raises(ValueError, match="one to one") as info:
        from_timm("eca_resnext26ts", checkpoint=state, include_preprocessing=False)
    message = str(info.value)
    assert "unmatched checkpoint tensors: ['stages.1.0.attn.extra']" in message
    assert "stages_1_0_attn: conv.weight" in message
    assert "wrong shapes: ['stages.2.1.conv2_kxk.conv.weight (8, 32, 3, 3)" in message


def test_keras_round_trip(tmp_path):
    # BoTNet blocks, ECA, grouped 3x3s and the SiLU stem's shifted max pool.
    model = from_timm("eca_botnext26ts_256", pretrained=False, input_shape=(64, 64, 3))
    images = np.random.default_rng(2).uniform(size=(2, 64, 64, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(to_numpy(reloaded(images)), to_numpy(model(images)), atol=1e-5)


def test_fixed_size_nets_default_to_timms_size():
    model = from_timm("lambda_resnet26rpt_256", pretrained=False, include_top=False)
    assert model.input_shape == (None, 256, 256, 3)
    assert model.output_shape == (None, 8, 8, 2048)
    halo = from_timm("halonet26t", pretrained=False, include_top=False)
    assert halo.input_shape == (None, None, None, 3)
