"""DANet and CCNet as published: `backbone="resnet101s"` (timm's dilated ResNet-101) and the
released heads.

The parameter counts are checked against the released definitions, re-created here in
PyTorch from their layer shapes (junfu1115/DANet `encoding/models/sseg/danet.py`:
`DANetHead` with `PAM_Module`/`CAM_Module`; speedinghzl/CCNet `networks/ccnet.py`:
`RCCAModule` with `CrissCrossAttention`, and `dsn`), on timm's PyTorch `resnet101s` as the
backbone (the released backbones have its shapes: a 3-conv 64/64/128 stem, bottlenecks
with 1x1 strided projection shortcuts). Counting builds no forward pass. ResNet-101 is
built once per network for the whole module (about 20 s each on 2 cores).
"""

import numpy as np
import pytest
from helpers import randomize_weights
from helpers import to_numpy
from model_checks import assert_keras_round_trip
from timm_import import import_timm
from timm_reference import random_timm_model
from timm_reference import save

from keras_attention import layers
from keras_attention import models

SIZE = 64  # 1/8: 8x8 maps in the heads


def counts(model):
    """(trainable, non-trainable) parameter counts of a Keras model."""

    def total(weights):
        return sum(int(np.prod(w.shape)) for w in weights)

    return total(model.trainable_weights), total(model.non_trainable_weights)


@pytest.fixture(scope="module")
def danet():
    return models.DANet(2, (SIZE, SIZE, 3), backbone="resnet101s", pretrained=False, outputs="all")


@pytest.fixture(scope="module")
def ccnet():
    return models.CCNet(2, (SIZE, SIZE, 3), backbone="resnet101s", pretrained=False, outputs="all")


# ---------------------------------------------------------------- the released definitions


def released_counts(classes):
    """{network: (parameters, BN running statistics)} of the released models, in PyTorch.

    The heads are re-created from the released modules' layer shapes; the backbone is
    timm's resnet101s without its classifier.
    """
    import torch
    from torch import nn

    timm = import_timm()
    backbone = timm.create_model("resnet101s", pretrained=False, num_classes=0)

    def conv_bn(cin, cout, bias=False):  # Sequential(Conv2d(3x3), BN[, ReLU]) of the heads
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout)]

    def classifier(cin):  # Sequential(Dropout2d(0.1), Conv2d(cin, classes, 1))
        return [nn.Dropout2d(0.1), nn.Conv2d(cin, classes, 1)]

    inter = 2048 // 4
    # DANetHead(2048, classes): conv5a, conv5c, sa (PAM_Module), sc (CAM_Module),
    # conv51, conv52, conv6, conv7, conv8.
    pam = nn.ModuleList(
        [
            nn.Conv2d(inter, inter // 8, 1),
            nn.Conv2d(inter, inter // 8, 1),
            nn.Conv2d(inter, inter, 1),
        ]
    )
    pam.gamma = nn.Parameter(torch.zeros(1))
    cam = nn.Module()
    cam.gamma = nn.Parameter(torch.zeros(1))
    danet_head = nn.ModuleList(
        [*conv_bn(2048, inter), *conv_bn(2048, inter), pam, cam]
        + [*conv_bn(inter, inter), *conv_bn(inter, inter)]
        + [*classifier(inter), *classifier(inter), *classifier(inter)]
    )
    # RCCAModule(2048, 512, classes): conva, cca (CrissCrossAttention(512)), convb,
    # bottleneck; dsn on layer3's 1024 channels (its 3x3 conv has a bias).
    cca = nn.ModuleList(
        [
            nn.Conv2d(inter, inter // 8, 1),
            nn.Conv2d(inter, inter // 8, 1),
            nn.Conv2d(inter, inter, 1),
        ]
    )
    cca.gamma = nn.Parameter(torch.zeros(1))
    ccnet_head = nn.ModuleList(
        [*conv_bn(2048, inter), cca, *conv_bn(inter, inter)]
        + [*conv_bn(2048 + inter, 512), *classifier(512)]
        + [*conv_bn(1024, 512, bias=True), *classifier(512)]
    )

    def count(*modules):
        parameters = sum(p.numel() for m in modules for p in m.parameters())
        statistics = sum(b.numel() for m in modules for n, b in m.named_buffers() if "running" in n)
        return parameters, statistics

    return {"danet": count(backbone, danet_head), "ccnet": count(backbone, ccnet_head)}


def test_released_counts_by_arithmetic():
    """The PyTorch re-creation above, against arithmetic from the released shapes."""
    conv3 = 9
    inter = 512
    # DANet head: 2 x (3x3 2048->512 + BN), PAM (two 1x1 512->64 and 512->512 with
    # biases, gamma), CAM gamma, 2 x (3x3 512->512 + BN), 3 x 1x1 512->19 with biases.
    danet_head = (
        2 * (conv3 * 2048 * inter + 2 * inter)
        + 2 * (inter * 64 + 64)
        + inter * inter
        + inter
        + 1
        + 1
        + 2 * (conv3 * inter * inter + 2 * inter)
        + 3 * (inter * 19 + 19)
    )
    # CCNet head: conva, CCA (as PAM), convb, bottleneck 3x3 2560->512 + BN, 1x1 to 19;
    # dsn 3x3 1024->512 with a bias + BN, 1x1 to 19.
    ccnet_head = (
        conv3 * 2048 * inter
        + 2 * inter
        + 2 * (inter * 64 + 64)
        + inter * inter
        + inter
        + 1
        + conv3 * inter * inter
        + 2 * inter
        + conv3 * 2560 * 512
        + 2 * 512
        + 512 * 19
        + 19
        + conv3 * 1024 * 512
        + 512
        + 2 * 512
        + 512 * 19
        + 19
    )
    # ResNet-101 with the 64/64/128 deep stem: timm's resnet101 (44,549,160 with its
    # 2048x1000 classifier) minus the 7x7 conv + BN, plus the three 3x3 convs + BNs;
    # layer1.0's 1x1 conv and projection then take 128 channels instead of 64.
    backbone = (
        44_549_160
        - (2048 * 1000 + 1000)
        - (49 * 3 * 64 + 2 * 64)
        + conv3 * 3 * 64
        + 2 * 64
        + conv3 * 64 * 64
        + 2 * 64
        + conv3 * 64 * 128
        + 2 * 128
        + 64 * (64 + 256)
    )
    released = released_counts(19)
    assert released["danet"][0] == backbone + danet_head
    assert released["ccnet"][0] == backbone + ccnet_head


# ------------------------------------------------------------------------------- the tests


def test_resnet101s_is_timms_deep_stem_resnet101():
    stem = models.from_timm("resnet101s", pretrained=False, features_only=True)
    assert stem.get_layer("conv1_0").kernel.shape == (3, 3, 3, 64)
    assert stem.get_layer("conv1_6").kernel.shape == (3, 3, 64, 128)
    assert models.timm_config("resnet101s")["hub_id"] == "timm/resnet101s.gluon_in1k"


@pytest.mark.parametrize("network", ["danet", "ccnet"])
def test_parameter_counts_equal_the_released_models(network, request):
    model = request.getfixturevalue(network)
    # 19 classes (Cityscapes): the model built with 2 classes, corrected per classifier.
    classifiers = {"danet": 3, "ccnet": 2}[network]
    trainable, statistics = counts(model)
    trainable += classifiers * (512 * 17 + 17)
    assert (trainable, statistics) == released_counts(19)[network]
    # And the literal numbers quoted in the docstrings.
    literal = {"danet": (66_578_555, 109_824), "ccnet": (71_287_911, 109_824)}
    assert (trainable, statistics) == literal[network]


def test_published_heads_output_shapes_and_names(danet, ccnet):
    x = np.random.default_rng(0).uniform(size=(1, SIZE, SIZE, 3)).astype("float32")
    for model, names in (
        (danet, ["logits", "position_logits", "channel_logits"]),
        (ccnet, ["logits", "aux_logits"]),
    ):
        assert model.output_names == names
        outputs = model(x, training=False)
        assert [tuple(o.shape) for o in outputs] == [(1, SIZE, SIZE, 2)] * len(names)
    # The released head's shapes, on the stride-8 2048-channel map (and layer3's 1024).
    assert danet.get_layer("head_conv5a_0").kernel.shape == (3, 3, 2048, 512)
    assert isinstance(danet.get_layer("head_sa"), layers.PositionAttention)
    assert isinstance(danet.get_layer("head_sc"), layers.ChannelAttention)
    assert danet.get_layer("head_conv8_1").kernel.shape == (1, 1, 512, 2)
    assert ccnet.get_layer("head_cca").recurrence == 2
    # 9x9: the released ceil-mode stem pool (64 -> 32 -> 17 -> 9), as the released code's.
    assert ccnet.get_layer("head_concat").output.shape[1:] == (9, 9, 2048 + 512)
    assert danet.get_layer("head_sum").output.shape[1:] == (8, 8, 512)
    assert ccnet.get_layer("dsn_0").bias is not None
    assert ccnet.get_layer("dsn_0").input.shape[-1] == 1024  # the third stage
    assert ccnet.get_layer("head_conva_1_act").negative_slope == pytest.approx(0.01)


def test_released_dilation_in_the_resnet101_backbones(danet, ccnet):
    # DANet's released ResNet dilates as timm; CCNet's: every block at the stage's rate.
    for model, first in ((danet, (1, 2)), (ccnet, (2, 4))):
        backbone = model.get_layer("resnet101s")
        rates = [
            backbone.get_layer(f"layer{s}_{b}_conv2").dilation_rate for s in (3, 4) for b in (0, 1)
        ]
        assert rates == [(first[0],) * 2, (2, 2), (first[1],) * 2, (4, 4)]
    stem = ccnet.get_layer("resnet101s").get_layer("maxpool").output.shape[1:3]
    assert stem == (17, 17)  # ceil((32 + 2 - 3) / 2) + 1; floor mode gives 16


# resnet18: the basic block's first 3x3 (conv1); resnet50 (slow, ~25 s): the bottleneck's conv2.
@pytest.mark.parametrize("name", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_released_dilation_equals_the_released_resnet(name, tmp_path):
    """The same random weights in timm's PyTorch model with the released code's changes
    (first dilated blocks at the stage's rate, ceil-mode stem pool) give our maps."""
    from keras_attention.models import published_segmentation as published

    torch = pytest.importorskip("torch")
    reference = random_timm_model(name, (SIZE, SIZE))
    path = save(reference, tmp_path / f"{name}.safetensors")
    timm_model = import_timm().create_model(
        name, pretrained=False, features_only=True, out_indices=(3, 4), output_stride=8
    )
    timm_model.load_state_dict(reference.state_dict(), strict=False)
    timm_model.eval()
    conv = "conv1" if name == "resnet18" else "conv2"  # the block's first 3x3
    for stage, rate in (("layer3", 2), ("layer4", 4)):
        module = getattr(getattr(timm_model, stage)[0], conv)
        module.dilation, module.padding = (rate, rate), (rate, rate)
    timm_model.maxpool.ceil_mode = True
    images = np.random.default_rng(1).uniform(size=(2, SIZE, SIZE, 3)).astype("float32")
    normalised = (images - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = timm_model(torch.from_numpy(normalised.transpose(0, 3, 1, 2).astype("float32")))
    expected = [t.numpy().transpose(0, 2, 3, 1) for t in expected]
    ours = published.timm_backbone(name, (SIZE, SIZE, 3), 8, (3, 4), True, path, "released")
    got = [to_numpy(t) for t in ours(images)]
    assert got[0].shape == expected[0].shape == (2, 9, 9, got[0].shape[-1])
    for g, e in zip(got, expected, strict=True):
        assert float(np.abs(g - e).max()) <= 1e-4 * float(np.abs(e).max())
    # timm's dilation gives other maps (8x8 here) from the same weights.
    timm_maps = published.timm_backbone(name, (SIZE, SIZE, 3), 8, (3, 4), True, path, "timm")(
        images
    )
    assert timm_maps[0].shape[1:3] == (8, 8)


def test_released_dilation_needs_a_resnet():
    with pytest.raises(ValueError, match="backbone_dilation='timm'"):
        models.CCNet(2, backbone="regnety_002", pretrained=False)
    model = models.CCNet(2, backbone="regnety_002", pretrained=False, backbone_dilation="timm")
    x = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype("float32")  # RGB in [0, 1]
    assert model(x).shape == (1, 32, 32, 2)


@pytest.mark.parametrize(
    ("builder", "outputs", "names"),
    [
        (models.DANet, ("channel", "sum"), ["channel_logits", "logits"]),
        (models.DANet, "position", ["position_logits"]),
        (models.CCNet, "aux", ["aux_logits"]),
        (models.CCNet, ("aux", "main"), ["aux_logits", "logits"]),
    ],
)
def test_selected_outputs_are_those_of_the_full_model(builder, outputs, names):
    full = builder(3, (32, 32, 3), backbone="resnet18", pretrained=False, outputs="all")
    randomize_weights(full)  # gamma = 0 would make the attention an identity
    picked = builder(3, (32, 32, 3), backbone="resnet18", pretrained=False, outputs=outputs)
    assert picked.output_names == names
    for layer in picked.layers:
        layer.set_weights(full.get_layer(layer.name).get_weights())
    x = np.random.default_rng(2).uniform(size=(2, 32, 32, 3)).astype("float32")
    every = dict(zip(full.output_names, full(x, training=False), strict=True))
    got = picked(x, training=False)
    got = got if isinstance(got, list) else [got]
    for name, tensor in zip(names, got, strict=True):
        np.testing.assert_allclose(to_numpy(tensor), to_numpy(every[name]), atol=1e-5)
    # The branches differ: an auxiliary output is not the main one.
    assert np.abs(to_numpy(every[full.output_names[1]]) - to_numpy(every["logits"])).max() > 1e-3


def test_pretrained_backbone_loads_a_local_checkpoint(tmp_path):
    reference = random_timm_model("resnet18", (32, 32))
    path = save(reference, tmp_path / "resnet18.safetensors")
    model = models.DANet(2, backbone="resnet18", checkpoint=path)
    kernel = model.get_layer("resnet18").get_layer("layer4_1_conv2").kernel
    expected = reference.layer4[1].conv2.weight.detach().numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(to_numpy(kernel), expected)


@pytest.mark.parametrize("builder", [models.DANet, models.CCNet], ids=["danet", "ccnet"])
def test_published_keras_round_trip(builder, tmp_path):
    model = builder(2, (32, 32, 3), backbone="resnet18", pretrained=False, outputs="all")
    randomize_weights(model)
    x = np.random.default_rng(3).uniform(size=(2, 32, 32, 3)).astype("float32")
    assert_keras_round_trip(model, x, tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "resnet18", "outputs": "pam"}, "outputs='pam'"),
        ({"backbone": "resnet18", "outputs": ()}, r"outputs=\(\)"),
        ({"backbone": "resnet18", "outputs": ("sum", "sum")}, "outputs="),
        ({"backbone": "resnet18", "backbone_dilation": "caffe"}, "backbone_dilation='caffe'"),
        ({"backbone": "resnet18", "output_stride": 4}, "output_stride=4"),
        ({"backbone": "resnet_101"}, "Unknown timm model"),
        ({"output_stride": 16}, "output_stride=16"),
        ({"outputs": "all"}, "outputs='all'"),
        ({"checkpoint": "w.safetensors"}, "checkpoint="),
    ],
)
def test_bad_published_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.DANet(2, pretrained=False, **kwargs)
