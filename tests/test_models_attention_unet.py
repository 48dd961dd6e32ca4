"""AttentionUNet and UNet: the released CT networks' parameter counts and forward pass, tiny inputs."""

import keras
import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy

from keras_attention import models
from keras_attention.layers import AttentionGate
from keras_attention.models import AttentionUNet
from keras_attention.models import UNet

TINY = (2, 4, 8, 16, 32)  # feature_scale 32 of the released widths: fast on a CPU


def released_parameter_count(attention, gates=2, in_channels=1, classes=4, feature_scale=4):
    """Trainable parameters of ozan-oktay/Attention-Gated-Networks' CT networks, by hand.

    Counted from the layer shapes of `unet_CT_multi_att_dsv_3D` (gates=2),
    `unet_CT_single_att_dsv_3D` (gates=1) and `unet_CT_dsv_3D` (no attention),
    with their `UnetConv3`, `UnetUp3_CT`, `UnetGridGatingSignal3`, `UnetDsv3`,
    `MultiAttentionBlock` and `GridAttentionBlock3D` (sub_sample_factor
    (2, 2, 2)); PyTorch counts a BatchNorm3d's weight and bias (2 per channel).
    """
    f = [w // feature_scale for w in (64, 128, 256, 512, 1024)]

    def conv(cin, cout, k=3, bias=True):
        return k**3 * cin * cout + (cout if bias else 0)

    def bn(c):
        return 2 * c

    def unet_conv3(cin, cout):  # two (3x3x3 conv, BN, ReLU)
        return conv(cin, cout) + bn(cout) + conv(cout, cout) + bn(cout)

    def grid_gate(c, cg, inter):  # theta 2x2x2 no bias, phi, psi, W = 1x1x1 conv + BN
        return (
            conv(c, inter, 2, False)
            + conv(cg, inter, 1)
            + conv(inter, 1, 1)
            + (conv(c, c, 1) + bn(c))
        )

    total = sum(unet_conv3(a, b) for a, b in zip([in_channels] + f[:4], f))  # encoder, center
    total += sum(unet_conv3(f[k] + f[k - 1], f[k - 1]) for k in (4, 3, 2, 1))  # up_concat
    total += sum(conv(f[k], classes, 1) for k in range(4)) + conv(4 * classes, classes, 1)
    if attention:
        total += conv(f[4], f[4], 1) + bn(f[4])  # gating
        for skip, gating in ((f[1], f[2]), (f[2], f[3]), (f[3], f[4])):
            total += gates * grid_gate(skip, gating, skip)
            total += conv(gates * skip, skip, 1) + bn(skip)  # combine_gates
    return total


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize(
    "kwargs, released",
    [
        ({"attention": True, "gates": 2}, 6_473_322),  # unet_ct_multi_att_dsv (the CT config)
        ({"attention": True, "gates": 1}, 6_214_151),  # unet_ct_single_att_dsv
        ({"attention": False}, 5_888_004),  # unet_ct_dsv (the U-Net baseline)
    ],
)
def test_parameter_count_equals_the_released_definition(kwargs, released):
    model = AttentionUNet(classes=4, input_shape=(None, None, None, 1), **kwargs)
    assert released_parameter_count(**kwargs) == released
    assert trainable_count(model) == released
    # BatchNormalization's moving mean and variance (PyTorch's buffers) besides.
    norms = [layer for layer in model._flatten_layers() if "norm" in type(layer).__name__.lower()]
    moving = sum(2 * int(layer.gamma.shape[0]) for layer in norms)
    assert model.count_params() == released + moving


def test_unet_is_attention_unet_without_attention():
    unet = UNet(classes=3, filters=TINY)
    plain = AttentionUNet(classes=3, filters=TINY, attention=False)
    assert [type(layer).__name__ for layer in unet.layers] == [
        type(layer).__name__ for layer in plain.layers
    ]
    assert not any(isinstance(layer, AttentionGate) for layer in unet.layers)
    assert unet.name == "unet_3d"
    assert trainable_count(unet) == trainable_count(plain)


def test_exported():
    assert models.AttentionUNet is AttentionUNet and models.UNet is UNet


# The forward pass, against a torch transcription of the released forward (eval mode),
# reading our model's weights by layer name.

torch = pytest.importorskip("torch")
from test_attention_gate import channels_first
from test_attention_gate import channels_last_numpy
from test_attention_gate import grid_attention_3d_reference
from test_attention_gate import torch_kernel
from torch_reference import batch_norm
from torch_reference import tensor


def released_forward(model, x, attention, gates, levels=4):
    """unet_CT_{multi,single}_att_dsv_3D / unet_CT_dsv_3D `forward`, with our weights."""
    functional = torch.nn.functional

    def conv(t, name, relu_bn=True):
        layer = model.get_layer(name)
        t = functional.conv3d(t, torch_kernel(layer.kernel), tensor(layer.bias))
        if relu_bn:
            t = functional.relu(batch_norm(t, model.get_layer(f"{name}_bn")))
        return t

    def conv3x3(t, name):
        layer = model.get_layer(name)
        t = functional.conv3d(t, torch_kernel(layer.kernel), tensor(layer.bias), padding=1)
        return functional.relu(batch_norm(t, model.get_layer(f"{name}_bn")))

    def unet_conv3(t, name):
        return conv3x3(conv3x3(t, f"{name}_1"), f"{name}_2")

    def up(t):
        return functional.interpolate(t, scale_factor=2, mode="trilinear")

    skips, t = [], x
    for level in range(1, levels + 1):
        t = unet_conv3(t, f"conv{level}")
        skips.append(t)
        t = functional.max_pool3d(t, 2)
    center = unet_conv3(t, "center")
    below, decoded = center, {}
    gating = conv(center, "gating") if attention else None
    for level in range(levels, 0, -1):
        skip = skips[level - 1]
        if attention and level > 1:
            signal = gating if level == levels else below
            gated = [
                grid_attention_3d_reference(
                    skip, signal, model.get_layer(f"attention{level}_gate{n}")
                )[0]
                for n in range(1, gates + 1)
            ]
            skip = conv(torch.cat(gated, 1), f"attention{level}_combine")
        below = decoded[level] = unet_conv3(torch.cat([skip, up(below)], 1), f"up{level}")
    maps = [conv(decoded[1], "dsv1", relu_bn=False)]
    for level in range(2, levels + 1):
        logits = conv(decoded[level], f"dsv{level}", relu_bn=False)
        maps.append(functional.interpolate(logits, scale_factor=2 ** (level - 1), mode="trilinear"))
    return conv(torch.cat(maps, 1), "final", relu_bn=False)


@pytest.mark.parametrize(
    "attention, gates", [(True, 2), (True, 1), (False, 2)], ids=["multi", "single", "plain"]
)
def test_matches_the_released_forward_pass(attention, gates):
    model = AttentionUNet(classes=3, filters=TINY, attention=attention, gates=gates)
    randomize_weights(model, seed=1)
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 16, 1)).astype("float32")
    actual = to_numpy(model(x, training=False))
    with torch.no_grad():
        expected = channels_last_numpy(released_forward(model, channels_first(x), attention, gates))
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


# Builders: shapes, sizes, save/load, a training step, mixed precision, bad arguments.


@pytest.mark.parametrize("dims", [2, 3])
def test_logits_have_the_input_size_for_any_size(dims):
    model = AttentionUNet(classes=3, dims=dims, filters=(2, 4, 8))
    for spatial in ((8, 12, 4), (9, 5, 6)):  # the second not divisible by 4
        x = np.zeros((2, *spatial[:dims], 1), "float32")
        assert tuple(model.predict(x, verbose=0).shape) == (2, *spatial[:dims], 3)


def test_two_d_network():
    model = AttentionUNet(classes=2, dims=2, input_shape=(16, 16, 3), filters=(4, 8, 16))
    assert model.name == "attention_unet_2d"
    gate = model.get_layer("attention2_gate1")
    assert tuple(gate.theta.kernel.shape) == (2, 2, 8, 8)  # attention2 gates conv2 (8 wide)
    assert model.output.shape == (None, 16, 16, 2)


def test_attention_maps_are_reachable():
    model = AttentionUNet(classes=2, filters=(2, 4, 8, 16), input_shape=(8, 8, 8, 1))
    alphas = [model.get_layer(f"attention{k}_gate{n}").output[1] for k in (2, 3) for n in (1, 2)]
    viewer = keras.Model(model.input, alphas)
    maps = viewer.predict(np.ones((1, 8, 8, 8, 1), "float32"), verbose=0)
    assert [m.shape for m in maps] == [(1, 4, 4, 4, 1)] * 2 + [(1, 2, 2, 2, 1)] * 2
    assert all(((m > 0) & (m < 1)).all() for m in maps)


def test_keras_file_round_trip(tmp_path):
    model = AttentionUNet(classes=2, filters=(2, 4, 8))
    randomize_weights(model)
    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("attention", [True, False])
def test_training_step(attention):
    model = AttentionUNet(
        classes=2, filters=(2, 4, 8), attention=attention, input_shape=(8, 8, 8, 1)
    )
    # No XLA here: compiling the 3-D network takes a minute on a 2-core CPU, and the
    # gate's own contract runs its jit fit step.
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 8, 1)).astype("float32")
    y = (x[..., 0] > 0).astype("int32")
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, epochs=3, batch_size=2, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    moved = [np.abs(w.numpy() - b).max() > 0 for w, b in zip(model.trainable_weights, before)]
    assert all(moved)


def test_mixed_precision_gives_float32_logits():
    keras.config.set_dtype_policy("mixed_bfloat16")  # conftest restores it
    model = AttentionUNet(classes=2, filters=(2, 4, 8))
    y = model(np.zeros((1, 8, 8, 8, 1), "float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    assert model.get_layer("conv1_1").compute_dtype == "bfloat16"


def test_without_deep_supervision():
    model = AttentionUNet(classes=2, filters=(2, 4, 8), deep_supervision=False)
    assert not any(layer.name.startswith("dsv") for layer in model.layers)
    assert model.get_layer("final").input.shape[-1] == 2  # the finest decoder level


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"dims": 4}, "dims"),
        ({"filters": (8,)}, "filters"),
        ({"filters": (8, 0)}, "filters"),
        ({"gates": 3}, "gates"),
        ({"sub_sample": 0}, "sub_sample"),
        ({"classes": 0}, "classes"),
        ({"input_shape": (8, 8, 1)}, "input_shape"),
        ({"input_shape": (8, 8, 8, None)}, "input_shape"),
    ],
)
def test_bad_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        AttentionUNet(**{"classes": 2, **kwargs})


def test_channels_first_equals_channels_last():
    from keras_attention.models import _common

    if not _common.channels_first_runs():
        pytest.skip("no NCHW convolution on this backend and machine")
    last = AttentionUNet(classes=2, filters=(2, 4, 8))
    randomize_weights(last)
    keras.config.set_image_data_format("channels_first")  # conftest restores it
    first = AttentionUNet(classes=2, filters=(2, 4, 8))
    assert first.input.shape == (None, 1, None, None, None)
    first.set_weights(last.get_weights())
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 8, 1)).astype("float32")
    expected = to_numpy(last(x))
    actual = np.moveaxis(to_numpy(first(np.moveaxis(x, -1, 1))), 1, -1)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_channels_first_refused_where_nchw_cannot_run(monkeypatch):
    from keras_attention.models import _common

    monkeypatch.setattr(_common, "channels_first_runs", lambda: False)
    keras.config.set_image_data_format("channels_first")  # conftest restores it
    with pytest.raises(ValueError, match="cannot run NCHW"):
        AttentionUNet(classes=2, filters=(2, 4, 8))
