"""NonLocalResNet50/101: the paper's C2D / I3D video ResNets with 0, 5 or 10 non-local blocks.

The parameter counts are checked against a count of the authors' released
Caffe2 definition (facebookresearch/video-nonlocal-net: `obtain_arc` and
`create_model` in `lib/models/resnet_video.py`, `resnet_helper.py`,
`nonlocal_helper.py`), re-typed below as a plain Python count of its layer
shapes, and against pytorchvideo's model zoo (C2D R50 24.33M, I3D R50 28.04M).
The network code is never run for the count; building takes a few seconds.
Clips are tiny (2 x 4 x 32 x 32 x 3); no weights are downloaded.
"""

import functools

import keras
import numpy as np
import pytest
from helpers import to_numpy

import keras_attention
from keras_attention.layers import NonLocalBlock
from keras_attention.models import NonLocalResNet50
from keras_attention.models import NonLocalResNet101
from keras_attention.models import from_timm

SIZE = 32


# --- The released definition, as a count of its layer shapes -------------------------------


def _released_arc(arc, depth):
    """`obtain_arc(arc_type)`: use_temp_convs per stage (1 -> kernel 3, 2 -> kernel 5)."""
    n4 = {50: 6, 101: 23}[depth]
    if arc in (1, 3):  # C2D
        return [[0], [0, 0, 0], [0, 0, 0, 0], [0] * n4, [0, 0, 0]]
    return [[2], [1, 1, 1], [1, 0, 1, 0], [1 - i % 2 for i in range(n4)], [0, 1, 0]]


def released_count(depth, i3d, layer_mod, conv3_nonlocal, conv4_nonlocal, classes):
    """(learnable parameters, redundant non-local biases, non-local block names).

    Caffe2's learnable parameters: conv weights (the backbone's `no_bias=1`),
    SpatialBN scale and bias (running statistics are not learnable), the
    non-local convs' weights and biases (NONLOCAL.NO_BIAS = 0), the FC's
    weight and bias. "Redundant": the phi, g and out biases, which the
    package's NonLocalBlock omits.
    """
    arc = (4 if depth == 101 else 2) if i3d else (3 if depth == 101 else 1)
    temps = _released_arc(arc, depth)
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    total = 3 * 64 * (1 + 2 * temps[0][0]) * 7 * 7 + 2 * 64  # conv1 + res_conv1_bn
    redundant, names = 0, set()
    dim_in = 64
    for stage, (n, dim_out) in enumerate(zip(blocks, (256, 512, 1024, 2048))):
        dim_inner = 64 * 2**stage
        stride = 1 if stage == 0 else 2
        if stage == 1:
            mod = 2 if depth == 101 else layer_mod
            mod = mod if conv3_nonlocal else 1000
        elif stage == 2:
            mod = layer_mod * 4 - 1 if depth == 101 else layer_mod
            mod = mod if conv4_nonlocal else 1000
        else:
            mod = 1000
        for idx in range(n):
            kt = 1 + 2 * temps[stage + 1][idx]
            total += dim_in * dim_inner * kt + 2 * dim_inner  # branch2a + bn
            total += dim_inner * dim_inner * 9 + 2 * dim_inner  # branch2b + bn
            total += dim_inner * dim_out + 2 * dim_out  # branch2c + bn
            block_stride = 2 if (idx == 0 and stride == 2) else 1
            if dim_in != dim_out or block_stride != 1:
                total += dim_in * dim_out + 2 * dim_out  # branch1 + bn
            dim_in = dim_out
            if idx % mod == mod - 1:
                inner = dim_in // 2
                total += 3 * (dim_in * inner + inner)  # theta, phi, g (with biases)
                total += inner * dim_in + dim_in + 2 * dim_in  # out (with bias) + bn
                redundant += 2 * inner + dim_in
                names.add(f"layer{stage + 1}_{idx}_nonlocal")
    total += 2048 * classes + classes  # pred
    return total, redundant, names


def _settings(nonlocal_blocks):
    """The released code's switches for 0, 5 or 10 blocks (NONLOCAL.LAYER_MOD and CONV*)."""
    return {0: (2, False, False), 5: (2, True, True), 10: (1, True, True)}[nonlocal_blocks]


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@functools.cache
def built(depth, variant, blocks):
    """Random-weight models shared by the tests that only inspect them (no calls)."""
    builder = NonLocalResNet50 if depth == 50 else NonLocalResNet101
    return builder(nonlocal_blocks=blocks, variant=variant, classes=400)


CASES = [
    (50, "c2d", 0),
    (50, "i3d", 0),
    (50, "i3d", 5),
    pytest.param(50, "c2d", 5, marks=pytest.mark.slow),
    (50, "i3d", 10),
    (101, "i3d", 5),
    pytest.param(101, "i3d", 0, marks=pytest.mark.slow),
    pytest.param(101, "c2d", 0, marks=pytest.mark.slow),
    pytest.param(101, "c2d", 5, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("depth", "variant", "blocks"), CASES)
def test_parameters_equal_the_released_definition(depth, variant, blocks):
    model = built(depth, variant, blocks)
    released, redundant, names = released_count(
        depth, variant == "i3d", *_settings(blocks), classes=400
    )
    # NonLocalBlock(use_bias=True) keeps the biases that cannot change the output.
    assert trainable_count(model) == released
    assert (redundant == 0) == (blocks == 0)
    placed = {layer.name for layer in model.layers if isinstance(layer, NonLocalBlock)}
    assert placed == names
    assert len(placed) == blocks


def test_counts_match_pytorchvideos_model_zoo():
    """pytorchvideo's Kinetics-400 zoo: C2D R50 8x8 24.33M, I3D R50 8x8 28.04M parameters."""
    assert trainable_count(built(50, "c2d", 0)) == 24_327_632
    assert trainable_count(built(50, "i3d", 0)) == 28_043_472
    assert round(24_327_632 / 1e6, 2) == 24.33
    assert round(28_043_472 / 1e6, 2) == 28.04


def test_the_inflation_pattern_of_obtain_arc():
    model = built(50, "i3d", 0)
    assert model.get_layer("conv1").kernel.shape == (5, 7, 7, 3, 64)
    temporal = {
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv3D) and layer.kernel.shape[0] == 3
    }
    expected = {"layer1_0", "layer1_1", "layer1_2", "layer2_0", "layer2_2"}
    expected |= {"layer3_0", "layer3_2", "layer3_4", "layer4_1"}
    assert temporal == {f"{b}_conv1" for b in expected}
    c2d = built(50, "c2d", 0)
    assert all(
        layer.kernel.shape[0] == 1 for layer in c2d.layers if isinstance(layer, keras.layers.Conv3D)
    )


# --- Behaviour on tiny clips ------------------------------------------------------------------


def _randomize_norms(model, seed=0):
    """Random BN statistics and affine terms (the initial ones hide bugs); kernels stay."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "nonlocal" in weight.path:
            continue  # keep the blocks' zero-initialised BN: the identity at init
        shape = tuple(weight.shape)
        if weight.path.endswith(("moving_variance", "gamma")):
            weight.assign(rng.uniform(0.5, 1.5, shape).astype(weight.dtype))
        elif weight.path.endswith(("moving_mean", "beta", "bias")):
            weight.assign(rng.uniform(-0.2, 0.2, shape).astype(weight.dtype))


@pytest.fixture(scope="module")
def image_model():
    model = from_timm(
        "resnet50", pretrained=False, include_preprocessing=False, input_shape=(SIZE, SIZE, 3)
    )
    _randomize_norms(model)
    return model


def _frame_and_clip(frames=4, batch=2, seed=0):
    frame = np.random.default_rng(seed).normal(size=(batch, SIZE, SIZE, 3)).astype("float32")
    return frame, np.repeat(frame[:, None], frames, axis=1)


@pytest.mark.parametrize(("variant", "inflation"), [("i3d", "centre"), ("c2d", "repeat")])
def test_a_repeated_frame_gives_the_2d_logits(image_model, variant, inflation):
    video = NonLocalResNet50(
        nonlocal_blocks=0,
        variant=variant,
        weights=image_model,
        inflation=inflation,
        classes=1000,  # the 2-D classifier is copied
        input_shape=(4, SIZE, SIZE, 3),
    )
    frame, clip = _frame_and_clip()
    expected = to_numpy(image_model(frame))
    got = to_numpy(video(clip))
    scale = np.abs(expected).max()
    assert scale > 1e-2
    np.testing.assert_allclose(got, expected, atol=2e-5 * scale, rtol=1e-5)


def test_repeat_inflation_holds_where_no_time_padding_reaches(image_model):
    """I3D's repeat / t: the 5-deep stem gives the 2-D response on frames 2 .. T-3 only."""
    video = NonLocalResNet50(
        nonlocal_blocks=0, weights=image_model, inflation="repeat", input_shape=(8, SIZE, SIZE, 3)
    )
    stem_2d = keras.Model(image_model.input, image_model.get_layer("act1").output)
    stem_3d = keras.Model(video.input, video.get_layer("act1").output)
    frame, clip = _frame_and_clip(frames=8)
    expected = to_numpy(stem_2d(frame))
    got = to_numpy(stem_3d(clip))
    for t in range(2, 6):
        np.testing.assert_allclose(got[:, t], expected, atol=2e-5 * np.abs(expected).max())
    assert np.abs(got[:, 0] - expected).max() > 1e-2  # the zero-padded edge frame differs


def test_nonlocal_blocks_are_the_identity_at_init(image_model):
    kwargs = {"weights": image_model, "classes": 1000, "input_shape": (4, SIZE, SIZE, 3)}
    baseline = NonLocalResNet50(nonlocal_blocks=0, **kwargs)
    with_blocks = NonLocalResNet50(nonlocal_blocks=5, **kwargs)
    _, clip = _frame_and_clip(seed=1)
    clip = clip + np.random.default_rng(2).normal(size=clip.shape).astype("float32")
    np.testing.assert_array_equal(to_numpy(with_blocks(clip)), to_numpy(baseline(clip)))
    block = with_blocks.get_layer("layer2_1_nonlocal")
    assert (block.mode, block.sub_sample, block.pool_before, block.scale) == (
        "embedded_gaussian",
        True,
        True,
        True,
    )


def test_headless_output_shape():
    _, clip = _frame_and_clip()
    features = NonLocalResNet50(include_top=False, input_shape=(None, None, None, 3))
    assert features.name == "nonlocal5_i3d_resnet50"
    # pool2 halves the 4 frames once; space / 32.
    assert tuple(features(clip).shape) == (2, 2, 1, 1, 2048)


def test_save_load_and_a_training_step(tmp_path):
    model = NonLocalResNet50(classes=3, input_shape=(4, SIZE, SIZE, 3))
    _, clip = _frame_and_clip()
    labels = np.array([0, 2])
    assert tuple(model(clip).shape) == (2, 3)
    # Eager: tracing a 3-D ResNet-50's training step costs ~20 s on 2 CPU cores.
    model.compile(
        keras.optimizers.SGD(0.1),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    block = model.get_layer("layer3_3_nonlocal")
    before = to_numpy(block.bn.gamma)
    history = model.fit(clip, labels, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.abs(to_numpy(block.bn.gamma) - before).max() > 0  # the blocks learn
    path = tmp_path / "nl_i3d.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded(clip)), to_numpy(model(clip)))


def test_a_timm_name_is_built_with_from_timm(monkeypatch, image_model):
    asked = []

    def fake_from_timm(name, **kwargs):
        asked.append(name)
        return image_model

    monkeypatch.setattr(keras_attention.models.timm, "from_timm", fake_from_timm)
    video = NonLocalResNet50(nonlocal_blocks=0, weights="resnet50", classes=1000)
    assert asked == ["resnet50"]
    np.testing.assert_array_equal(
        to_numpy(video.get_layer("bn1").moving_mean),
        to_numpy(image_model.get_layer("bn1").moving_mean),
    )
    kernel = to_numpy(video.get_layer("layer1_0_conv1").kernel)
    np.testing.assert_allclose(
        kernel, np.repeat(to_numpy(image_model.get_layer("layer1_0_conv1").kernel)[None], 3, 0) / 3
    )


def test_a_mismatched_2d_model_is_refused(image_model):
    resnet18 = from_timm("resnet18", pretrained=False, input_shape=(SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="does not fill.*layer1_0_conv3"):
        NonLocalResNet50(weights=resnet18)
    features = image_model.get_layer("global_pool").output
    extra = keras.layers.Dense(2, name="extra_head")(features)
    two_heads = keras.Model(image_model.input, [image_model.output, extra])
    with pytest.raises(ValueError, match=r"not used: \['extra_head'\]"):
        NonLocalResNet50(weights=two_heads)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nonlocal_blocks": 3}, "nonlocal_blocks=3"),
        ({"nonlocal_blocks": True}, "nonlocal_blocks=True"),
        ({"nonlocal_blocks": {"res6": [0]}}, "res6"),
        ({"nonlocal_blocks": {"res3": [4]}}, r"\[0, 4\)"),
        ({"variant": "3d"}, "variant='3d'"),
        ({"inflation": "zero"}, "inflation='zero'"),
        ({"weights": 1}, "weights=1"),
        ({"dropout_rate": 1.0}, "dropout_rate=1.0"),
        ({"classes": 0}, "classes=0"),
        ({"input_shape": (32, 32, 3)}, "input_shape"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NonLocalResNet50(**kwargs)


def test_resnet101_takes_mapped_blocks_but_no_unplaced_ten():
    with pytest.raises(ValueError, match="no 10-block ResNet-101"):
        NonLocalResNet101(nonlocal_blocks=10)
    model = NonLocalResNet101(nonlocal_blocks={"res4": [0, 22]}, variant="c2d")
    placed = {layer.name for layer in model.layers if isinstance(layer, NonLocalBlock)}
    assert placed == {"layer3_0_nonlocal", "layer3_22_nonlocal"}
