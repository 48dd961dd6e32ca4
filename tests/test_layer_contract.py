"""The shared layer contract (DESIGN.md): every public layer joins by one line in CASES.

Each case is run through shapes, dynamic sizes, config and `.keras` round trips,
gradients, data formats, a compiled fit step, `return_attention`
and input validation, on whichever backend KERAS_BACKEND selects. A layer whose
class lists 3 in `spatial_ranks` runs the same checks again on a small clip
(`<name>-3d`, shape BATCH x DEPTH x HEIGHT x WIDTH x C); joining takes no line here.
Mixed precision has its own module over the same cases, test_mixed_precision_contract.py.
"""

import dataclasses

import keras
import numpy as np
import pytest
from helpers import input_gradient
from helpers import randomize_weights
from helpers import to_numpy
from helpers import trainable_gradients

import keras_attention
from keras_attention import layers
from keras_attention.layers.base import ImageAttentionLayer


@dataclasses.dataclass
class Case:
    cls: type
    kwargs: dict
    channels: int
    # argument -> an invalid value; each must raise a ValueError naming the argument.
    bad_kwargs: dict
    # (height, width) pairs ((depth, height, width) for clips) for the dynamic-size test. A layer whose weights fix
    # the size (BoT's relative embeddings) or that needs multiples of a block
    # lists sizes it accepts; the others keep the default. Other tests use
    # HEIGHT x WIDTH, which every case accepts.
    sizes: tuple = ((5, 7), (8, 6))
    # 2: images; 3: clips (the volume cases are made from the image cases).
    rank: int = 2
    # The clips' depth where DEPTH does not serve (see GlobalAttention's case).
    volume_depth: int = None
    # Weights whose gradient is zero up to rounding by construction: a bias that a
    # training-mode BatchNormalization right after it cancels (kept to match timm).
    cancelled: tuple = ()

    @property
    def id(self):
        return self.cls.__name__ + ("-3d" if self.rank == 3 else "")

    def spatial(self, height=None, width=None, depth=None):
        """The spatial shape of this case's inputs: (H, W) or (D, H, W)."""
        height, width = height or HEIGHT, width or WIDTH
        depth = depth or self.volume_depth or DEPTH
        return (height, width) if self.rank == 2 else (depth, height, width)


CASES = [
    Case(layers.SqueezeExcitation, {"reduction": 4}, 16, {"reduction": 0}),
    Case(layers.EfficientChannelAttention, {}, 16, {"kernel_size": 4, "gamma": -1}),
    Case(layers.EfficientChannelAttention, {"padding": "circular"}, 16, {"padding": "reflect"}),
    Case(
        layers.SelectiveKernel, {"groups": 4, "min_units": 4}, 16, {"groups": 0, "dilations": (1,)}
    ),
    Case(layers.SelfAttention2D, {"reduction": 4}, 16, {"reduction": 0}),
    # reduction 4: 4 hidden units (with 2, its LayerNorm outputs +-1 whatever fc1 gives,
    # so fc1 gets no gradient).
    Case(
        layers.GlobalContext,
        {"fusion": "mul_add", "reduction": 4},
        16,
        {"fusion": "sum", "reduction": 0},
    ),
    Case(
        layers.SplitAttention,
        {"radix": 2, "cardinality": 2, "min_units": 4},
        16,
        {"radix": 0, "kernel_size": 2, "filters": 3},
        cancelled=("fc1/bias",),
    ),
    Case(layers.NonLocalBlock, {}, 16, {"mode": "softmax", "inter_channels": 0, "sub_sample": 1}),
    Case(layers.SpatialTransformer, {}, 16, {"localization": "cnn", "output_size": (0, 4)}),
    Case(layers.ChannelGate, {"reduction": 4}, 16, {"reduction": 0}),
    Case(layers.SpatialGate, {"kernel_size": 3}, 16, {"kernel_size": 4}),
    Case(layers.CBAM, {"reduction": 4, "kernel_size": 3}, 16, {"reduction": -1, "kernel_size": 0}),
    Case(layers.PositionAttention, {"reduction": 4}, 16, {"reduction": 0}),
    Case(layers.ChannelAttention, {}, 16, {"data_format": "NCHW"}),
    Case(layers.DualAttention, {"filters": 8, "reduction": 2}, 16, {"filters": 0, "reduction": 0}),
    Case(layers.CrissCrossAttention, {"reduction": 4}, 16, {"reduction": 0, "recurrence": 0}),
    Case(
        layers.ResidualAttention,
        {"depth": 2, "p": 0, "t": 1},
        16,
        {"depth": 0, "p": -1, "t": 0, "r": 0},
    ),
    Case(
        layers.SpatialChannelSqueezeExcitation,
        {"reduction": 4, "combine": "max"},
        16,
        {"reduction": 0, "combine": "mul"},
    ),
    Case(layers.SpatialGroupEnhance, {"groups": 4}, 16, {"groups": 0}),
    Case(layers.ShuffleAttention, {"groups": 4}, 16, {"groups": -1}),
    Case(layers.EfficientMultiScaleAttention, {"groups": 4}, 16, {"groups": 0}),
    Case(
        layers.EfficientLocalAttention,
        {"kernel_size": 3, "norm_groups": 4},
        16,
        {"kernel_size": 4, "norm_groups": 0},
    ),
    # Clips of depth 5: TensorFlow 2.21's oneDNN bfloat16 Conv3D filter gradient crashes the
    # process (double free) on a depth-4 clip under its 7x7x7 kernels (depths 5-8 ran).
    Case(layers.GlobalAttention, {"reduction": 4}, 16, {"reduction": 0}, volume_depth=5),
    Case(layers.LargeKernelAttention, {}, 16, {"data_format": "NCHW"}),
    Case(layers.PolarizedSelfAttention, {}, 16, {"layout": "both"}),
    Case(layers.AxialAttention, {"span": 10, "num_heads": 2}, 16, {"span": 0, "num_heads": 0}),
    Case(layers.ContextualTransformer, {}, 16, {"kernel_size": 4}),
    Case(
        layers.OutlookAttention,
        {"num_heads": 2, "stride": 2},
        16,
        {"num_heads": 0, "kernel_size": 2, "stride": 0},
    ),
    Case(
        layers.GatherExcite,
        {"extent": 2, "extra_params": True, "reduction": 4},
        16,
        {"extent": 3, "extra_params": 1, "reduction": 0},
    ),
    Case(layers.CoordinateAttention, {"reduction": 4}, 16, {"reduction": 0, "min_units": 0}),
    Case(layers.EffectiveSqueezeExcitation, {}, 16, {"gate": "relu"}),
    Case(
        layers.BottleneckAttention,
        {"reduction": 4, "dilation_rate": 2},
        16,
        {"reduction": 0, "dilation_rate": 0, "combine": "mean"},
    ),
    Case(layers.TripletAttention, {"kernel_size": 3}, 16, {"kernel_size": 4, "spatial": "no"}),
    Case(layers.SimAM, {}, 16, {"e_lambda": 0}),
    Case(layers.StyleRecalibration, {}, 16, {"data_format": "NCHW"}),
    Case(
        layers.FrequencyChannelAttention,
        {"reduction": 4},
        16,
        {"reduction": 0, "dct_height": 4, "num_frequencies": 3},
    ),
    Case(
        layers.BottleneckSelfAttention,
        {"feature_size": (6, 10), "num_heads": 2},
        16,
        {"feature_size": 0, "num_heads": 0, "key_dim": -1, "use_bias": 1},
        sizes=((6, 10),),
    ),
    Case(
        layers.HaloAttention,
        {"block_size": 2, "halo_size": 1, "num_heads": 2},
        16,
        {"block_size": 0, "halo_size": -1, "num_heads": 0, "scale_position_logits": "no"},
        sizes=((4, 6), (8, 2)),
    ),
    Case(
        layers.LambdaLayer,
        {"num_heads": 2, "key_dim": 4, "context_size": 3},
        16,
        {"num_heads": 0, "key_dim": 0, "context_size": 4, "feature_size": (5, 7)},
    ),
    Case(
        layers.DoubleAttention,
        {"feature_channels": 4, "descriptors": 3},
        16,
        {"feature_channels": 0, "descriptors": -1},
    ),
    Case(layers.ExternalAttention, {"units": 8}, 16, {"units": 0}),
]

BATCH, HEIGHT, WIDTH = 2, 6, 10  # non-square on purpose
# Clips: BATCH x DEPTH x HEIGHT x VOLUME_WIDTH, small (CI runs every case on three backends).
DEPTH, VOLUME_WIDTH = 4, 5
# The volume form of every case whose layer has one, at the small clip size.
VOLUME_CASES = [
    dataclasses.replace(case, rank=3, sizes=tuple((3, h, w) for h, w in case.sizes))
    for case in CASES
    if 3 in case.cls.spatial_ranks
]
IMAGE_ONLY_CASES = [case for case in CASES if 3 not in case.cls.spatial_ranks]
ALL_CASES = [pytest.param(case, id=case.id) for case in CASES + VOLUME_CASES]


def make(case, **overrides):
    return case.cls(**{**case.kwargs, **overrides})


def random_input(
    case, height=None, width=None, scale=1.0, channels_first=False, seed=0, depth=None
):
    """Normal inputs of the case's rank; clips default to DEPTH x HEIGHT x VOLUME_WIDTH."""
    if case.rank == 3:
        width = width or VOLUME_WIDTH
    spatial = case.spatial(height, width, depth)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, *spatial, case.channels)).astype("float32") * scale
    return to_channels_first(x) if channels_first else x


def to_channels_first(x):
    return np.moveaxis(x, -1, 1)


def symbolic_input(case):
    return keras.Input((None,) * case.rank + (case.channels,))


def built_randomized(case, **overrides):
    layer = make(case, **overrides)
    channels_first = layer.data_format == "channels_first"
    layer(random_input(case, channels_first=channels_first))
    randomize_weights(layer)
    return layer


def first(outputs):
    return outputs[0] if isinstance(outputs, tuple) else outputs


@pytest.mark.parametrize("case", ALL_CASES)
def test_output_shape_on_non_square_input(case):
    layer = make(case)
    x = random_input(case)
    y = layer(x)
    assert tuple(y.shape) == tuple(layer.compute_output_shape(x.shape))
    assert tuple(y.shape[:-1]) == x.shape[:-1]


@pytest.mark.parametrize("case", ALL_CASES)
def test_dynamic_spatial_size(case):
    inputs = symbolic_input(case)
    model = keras.Model(inputs, make(case)(inputs))
    for size in case.sizes:
        # predict() runs a traced graph, where shape bugs that eager mode hides show up.
        y = model.predict(random_input(case, *size[-2:], depth=size[0]), verbose=0)
        assert tuple(y.shape[1:-1]) == tuple(size)


@pytest.mark.parametrize("case", ALL_CASES)
def test_config_round_trip(case):
    layer = built_randomized(case)
    config = layer.get_config()
    clone = case.cls.from_config(config)
    assert clone.get_config() == config
    x = random_input(case)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(clone(x)), to_numpy(layer(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ALL_CASES)
def test_keras_file_round_trip_in_safe_mode(case, tmp_path):
    inputs = symbolic_input(case)
    layer = make(case)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True, no custom_objects
    loaded_layer = loaded.layers[-1]
    assert type(loaded_layer) is case.cls
    assert loaded_layer.get_config() == layer.get_config()
    x = random_input(case)
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ALL_CASES)
def test_gradients_reach_every_trainable_weight(case):
    layer = built_randomized(case)
    if not layer.trainable_weights:
        # Parameter-free mechanisms (SimAM): the gradient must reach the input instead.
        gradient = input_gradient(layer, random_input(case))
        assert np.isfinite(gradient).all() and np.abs(gradient).max() > 0
        return
    gradients = trainable_gradients(layer, random_input(case))
    assert len(gradients) == len(layer.trainable_weights) > 0
    largest = max(np.abs(g).max() for g in gradients)
    for weight, gradient in zip(layer.trainable_weights, gradients):
        assert gradient is not None, weight.path
        if weight.path.endswith(case.cancelled):
            assert np.abs(gradient).max() <= 1e-3 * largest, weight.path
        else:
            assert np.abs(gradient).max() > 0, f"zero gradient for {weight.path}"


@pytest.mark.parametrize("case", ALL_CASES)
def test_channels_first_matches_channels_last(case):
    last = built_randomized(case, data_format="channels_last")
    first_ = make(case, data_format="channels_first")
    first_(random_input(case, channels_first=True))
    first_.set_weights(last.get_weights())
    x = random_input(case, seed=3)
    expected = to_numpy(last(x))
    actual = to_numpy(first_(to_channels_first(x)))
    np.testing.assert_allclose(np.moveaxis(actual, 1, -1), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ALL_CASES)
def test_global_channels_first_is_followed(case):
    keras.config.set_image_data_format("channels_first")  # conftest restores it
    layer = make(case)
    assert layer.data_format == "channels_first"
    x = random_input(case, channels_first=True)
    y = layer(x)
    assert tuple(y.shape) == tuple(layer.compute_output_shape(x.shape))
    assert tuple(y.shape[2:]) == x.shape[2:]


# XLA compiles each clip model for 5-45 s on TensorFlow's CPU (2 cores), most of the
# contract's time on clips; CI runs the clips' jit step on JAX (jit is how JAX always
# runs, the same graphs) and on PyTorch, and TensorFlow's under the slow marker.
XLA_CASES = [
    pytest.param(case, id=case.id, marks=pytest.mark.slow)
    if case.rank == 3 and keras.backend.backend() == "tensorflow"
    else pytest.param(case, id=case.id)
    for case in CASES + VOLUME_CASES
]


@pytest.mark.parametrize("case", XLA_CASES)
def test_fit_step_with_jit_compile(case):
    inputs = keras.Input(random_input(case).shape[1:])
    pooling = {2: keras.layers.GlobalAveragePooling2D, 3: keras.layers.GlobalAveragePooling3D}
    outputs = keras.layers.Dense(1)(pooling[case.rank]()(make(case)(inputs)))
    model = keras.Model(inputs, outputs)
    # XLA on TensorFlow, jit on JAX; torch.compile would only add minutes here.
    jit = "auto" if keras.backend.backend() == "torch" else True
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit)
    history = model.fit(random_input(case), np.zeros((BATCH, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("case", ALL_CASES)
def test_return_attention(case):
    layer = built_randomized(case)
    x = random_input(case)
    outputs, attention = layer(x, return_attention=True)
    np.testing.assert_allclose(to_numpy(outputs), to_numpy(layer(x)), rtol=1e-6, atol=1e-6)
    maps = attention.values() if isinstance(attention, dict) else [attention]
    assert maps and all(len(m.shape) >= 2 and m.shape[0] == BATCH for m in maps)
    # The functional API sees the same pair.
    symbolic = layer(symbolic_input(case), return_attention=True)
    assert isinstance(symbolic, tuple) and len(symbolic) == 2


@pytest.mark.parametrize("case", ALL_CASES)
def test_rank_3_input_raises(case):
    with pytest.raises(ValueError, match=r"ndim=4|4-D"):
        make(case)(np.zeros((HEIGHT, WIDTH, case.channels), "float32"))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in VOLUME_CASES])
def test_rank_6_input_raises(case):
    with pytest.raises(ValueError, match=r"5-D volumes.*6-D"):
        make(case)(np.zeros((1, 2, 3, 4, 5, case.channels), "float32"))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in IMAGE_ONLY_CASES])
def test_volume_input_to_an_image_only_layer_says_why(case):
    """The layer's own message names it, the 5-D input and its reason, not Keras's ndim=4."""
    layer = make(case)
    with pytest.raises(ValueError, match=rf"{case.cls.__name__} has no 3-D form: .+5-D"):
        layer(np.zeros((BATCH, DEPTH, HEIGHT, WIDTH, case.channels), "float32"))
    # A layer that stays 2-D says why in its own words, not the base class's placeholder.
    assert layer.no_volume_reason != ImageAttentionLayer.no_volume_reason


@pytest.mark.parametrize("case", ALL_CASES)
def test_bad_arguments_raise(case):
    assert case.bad_kwargs, "each case lists at least one invalid argument"
    for name, value in case.bad_kwargs.items():
        with pytest.raises(ValueError, match=f"`{name}`"):
            make(case, **{name: value})
    with pytest.raises(ValueError, match="`data_format`"):
        make(case, data_format="NHWC")


@pytest.mark.parametrize("case", ALL_CASES)
def test_registered_and_exported(case):
    name = case.cls.__name__
    assert getattr(keras_attention, name) is case.cls
    assert keras.saving.get_registered_name(case.cls) == f"keras_attention>{name}"
    assert case.cls.__doc__ and "Reference" in case.cls.__doc__
    assert case.cls in {keras_attention.registry.get_class(n) for n in keras_attention.available()}
