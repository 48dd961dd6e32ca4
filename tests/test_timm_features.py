"""from_timm(features_only=True, out_indices, output_stride): timm's feature maps, equal to timm's.

The same random checkpoint loads into timm's `create_model(name,
features_only=True, out_indices=..., output_stride=...)` and into ours; each
map is held to the logit tests' rule (our float32 error against timm in
float64 at most 4x timm float32's, or 1e-4 of the map's scale). 64x64 images
keep it quick (HaloNet's 8x8 blocks need 256); one name per block kind, the
deeper ones in the slow group.
"""

import copy

import keras
import numpy as np
import pytest
import torch
from helpers import to_numpy
from timm_import import import_timm
from timm_reference import images
from timm_reference import random_timm_model
from timm_reference import save

from keras_attention.models import feature_info
from keras_attention.models import from_timm
from keras_attention.models import pyramid_outputs

SIZE = (64, 64)
CASES = [
    ("resnet18", 8),  # basic block
    ("resnet18", 16),
    ("resnet50d", 8),  # bottleneck, deep stem, average-pool-down shortcut
    ("ecaresnet26t", 16),  # ECA, tiered stem
    ("seresnet50", 32),  # SE
    ("skresnet18", 8),  # selective kernel (split input)
    ("resnetrs50", 16),  # ResNet-RS: SE 1/4, strided-conv stem pool
    ("resnest14d", 32),  # ResNeSt: features only (no dilated SplitAttention here)
    ("legacy_seresnet50", 32),  # the Caffe SENet: features only, as timm's
    ("regnety_002", 8),
    ("regnety_002", 16),
    ("resnet33ts", 16),  # ByobNet: stem without pool, final_conv, a dilated equal-width stage
    pytest.param("gcresnext26ts", 8, marks=pytest.mark.slow),  # grouped 3x3, GC, no final_conv
    ("lambda_resnet26t", 8),  # stem pool; lambda layers unstrided (not dilated) when dilated
    ("botnet26t_256", 32),  # BoTNet: fixed size (its embeddings), stride 32 only
    ("regnetz_b16", 32),  # RegNetZ: one-conv stem, no shortcut on width changes
    ("regnetz_b16", 16),
    ("regnetz_b16", 8),
    ("ese_vovnet19b_dw", 32),  # VoVNet: stride 32 only, as timm's
    pytest.param("regnetz_d8", 8, marks=pytest.mark.slow),  # tiered stem, unstrided stage 0
    pytest.param("eca_halonext26ts", 8, marks=pytest.mark.slow),  # halo needs 256x256
    pytest.param("skresnext50_32x4d", 8, marks=pytest.mark.slow),
    pytest.param("seresnextaa101d_32x8d", 16, marks=pytest.mark.slow),
    pytest.param("regnety_016", 8, marks=pytest.mark.slow),
]
# Self-attention nets' input sides (tests/test_timm_byobnet.py's); *_256 fix theirs.
SIZES = {"botnet26t_256": 64, "eca_halonext26ts": 256}


def _timm_features(reference, name, output_stride, out_indices, **kwargs):
    kwargs.update(features_only=True, out_indices=out_indices)
    if output_stride != 32:
        kwargs["output_stride"] = output_stride
    model = import_timm().create_model(name, pretrained=False, **kwargs)
    # timm's flatten_sequential renames a Sequential's children ("stages.0" -> "stages_0").
    names = set(model.state_dict())
    state = {}
    for key, value in reference.state_dict().items():
        flat = key.replace(".", "_", 1)
        state[key if key in names or flat not in names else flat] = value
    result = model.load_state_dict(state, strict=False)
    assert not result.missing_keys
    return model.eval()


def _maps(model, nchw):
    with torch.no_grad():
        return [t.numpy().transpose(0, 2, 3, 1) for t in model(torch.from_numpy(nchw))]


def compare_features(name, output_stride, tmp_path, out_indices=(0, 1, 2, 3, 4)):
    size = (SIZES[name],) * 2 if name in SIZES else SIZE
    timm_kwargs, kwargs = {}, {}
    if name.endswith("_256"):  # fixed-size nets: timm's img_size, our input_shape
        timm_kwargs, kwargs = {"img_size": size}, {"input_shape": (*size, 3)}
    reference = random_timm_model(name, size, **timm_kwargs)
    path = save(reference, tmp_path / f"{name}.safetensors")
    timm_model = _timm_features(reference, name, output_stride, out_indices, **timm_kwargs)
    nchw = images(size)
    exact = _maps(copy.deepcopy(timm_model).double(), nchw.astype("float64"))
    timm32 = _maps(timm_model, nchw)
    model = from_timm(
        name,
        checkpoint=path,
        include_preprocessing=False,
        features_only=True,
        out_indices=out_indices,
        output_stride=output_stride,
        **kwargs,
    )
    ours = [to_numpy(t) for t in model(nchw.transpose(0, 2, 3, 1))]
    return model, timm_model, exact, timm32, ours


@pytest.mark.parametrize(("name", "output_stride"), CASES)
def test_feature_maps_equal_timm(name, output_stride, tmp_path):
    model, timm_model, exact, timm32, ours = compare_features(name, output_stride, tmp_path)
    info = timm_model.feature_info
    expected = list(zip(info.channels(), info.reduction(), info.module_name(), strict=True))
    got = [(i["num_chs"], i["reduction"], i["module"]) for i in feature_info(model)]
    assert got == expected
    # Every family's maps are at 1/2 ... 1/32 undilated: P1 ... P5, dilated or not.
    assert list(pyramid_outputs(model)) == ["P1", "P2", "P3", "P4", "P5"]
    assert len(ours) == len(exact)
    for index, (e, t, o) in enumerate(zip(exact, timm32, ours, strict=True)):
        assert o.shape == e.shape, index
        error, timm_error = float(np.abs(o - e).max()), float(np.abs(t - e).max())
        bound = max(4 * timm_error, 1e-4 * float(np.abs(e).max()))
        print(f"{name} os{output_stride} map {index}: ours {error:.3g}, timm {timm_error:.3g}")
        assert error <= bound, f"map {index}: ours {error:.3g} vs float64, bound {bound:.3g}"


def test_out_indices_order_and_pyramid_survive_save_and_load(tmp_path):
    out_indices = (4, 1, 2)
    model, _, exact, _, ours = compare_features("resnet18", 16, tmp_path, out_indices)
    # timm returns the maps in ascending index order; ours come in out_indices order.
    for map_, index in zip(ours, out_indices, strict=True):
        np.testing.assert_allclose(map_, exact[sorted(out_indices).index(index)], atol=1e-4)
    assert [o.shape[-1] for o in ours] == [512, 64, 128]
    assert list(pyramid_outputs(model)) == ["P5", "P2", "P3"]
    model.save(tmp_path / "features.keras")
    reloaded = keras.saving.load_model(tmp_path / "features.keras", safe_mode=True)
    assert feature_info(reloaded) == feature_info(model)
    assert [i["reduction"] for i in feature_info(reloaded)] == [16, 4, 8]
    level4 = keras.Model(reloaded.inputs, pyramid_outputs(reloaded)["P5"])
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(level4(x)), to_numpy(model(x)[0]), atol=1e-5)


def test_only_the_classifier_may_be_left_out_of_a_feature_model():
    state = {k: v.numpy() for k, v in random_timm_model("resnet18", SIZE).state_dict().items()}
    model = from_timm("resnet18", checkpoint=state, features_only=True)
    assert not any("fc" == layer.name for layer in model.layers)
    del state["layer4.1.bn2.running_var"]
    with pytest.raises(ValueError, match="layer4_1_bn2: running_var"):
        from_timm("resnet18", checkpoint=state, features_only=True)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("resnest14d", {"output_stride": 16}, "SplitAttention has no dilation"),
        ("legacy_seresnet50", {"output_stride": 8}, "no output_stride"),
        ("botnet26t_256", {"output_stride": 16}, "relative position embeddings"),
        ("lambda_resnet26rpt_256", {"output_stride": 8}, "output_stride=8"),
        ("ese_vovnet19b_dw", {"output_stride": 16}, "VoVNet has no dilation"),
        ("volo_d1_224", {"features_only": True}, "VOLO has no output_stride"),
        ("volo_d1_224", {"output_stride": 16}, "features_only=False, output_stride=16"),
        ("resnet18", {"output_stride": 4}, "output_stride=4"),
        ("resnet18", {"out_indices": (1,)}, "needs features_only=True"),
        ("resnet18", {"features_only": True, "out_indices": (5,)}, r"out_indices=\(5,\)"),
        ("resnet18", {"features_only": True, "out_indices": (1, -4)}, "repeats"),
        ("resnet18", {"features_only": True, "out_indices": "1"}, "out_indices='1'"),
    ],
)
def test_what_cannot_be_built_is_refused(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        from_timm(name, pretrained=False, **kwargs)
