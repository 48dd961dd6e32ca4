"""Smoke test of examples/benchmark: tiny shapes, in-process, no timing assertions."""

import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_attention
from examples.benchmark import calls
from examples.benchmark import cli
from examples.benchmark import layers
from examples.benchmark import machine
from examples.benchmark import memory
from examples.benchmark import references
from examples.benchmark import report
from examples.benchmark import segmentation
from examples.benchmark import settings
from examples.benchmark import targets as targets_module
from examples.benchmark import volume_references
from examples.benchmark import volumes

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLUMNS = [
    "layer",
    "kwargs",
    "input",
    "fwd ms",
    "fwd x base",
    "fwd+bwd ms",
    "fwd+bwd x base",
    "peak fwd MiB",
    "x base",
    "peak fwd+bwd MiB",
    "x base",
]


def table(text, header_start):
    """The rows (lists of cells) of the Markdown table whose header starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[0], rows[2:]  # header, body (after the |---| line)


def test_small_run_has_a_row_per_layer_and_shape(tmp_path):
    output = tmp_path / "bench.md"
    result = cli.main(
        [
            "--shapes",
            "small",
            "--no-memory",
            "--skip-models",
            "--skip-targets",
            "--warmup",
            "1",
            "--repeats",
            "2",
            "--output",
            str(output),
        ]
    )
    header, body = table(output.read_text(), "| layer |")
    assert header == COLUMNS
    # Every registered single-input layer (AttentionGate takes [x, g]) has a row,
    names = [n for n in keras_attention.available() if n not in settings.MULTI_INPUT]
    # plus the baseline and the identity once per shape group.
    layer_column = [row[0] for row in body]
    assert sorted(n for n in layer_column if n not in ("conv1x1", "identity")) == sorted(names)
    groups = len({row["shape"] for row in result["layers"]})
    assert layer_column.count("conv1x1") == layer_column.count("identity") == groups
    for row in body:
        assert float(row[3]) >= 0 and float(row[5]) >= 0
        assert row[7] == "n/a"  # memory skipped
    baseline_rows = [row for row in result["layers"] if row["layer"] == "conv1x1"]
    assert all(row["forward_ratio"] == 1.0 for row in baseline_rows)
    # The policy of the run is recorded and the global one restored.
    assert "- precision: float32" in output.read_text()
    assert keras.config.dtype_policy().name == "float32"


def test_layer_selection_and_precision():
    result = cli.main(
        [
            "--layers",
            "se,eca",
            "--shapes",
            "small",
            "--precision",
            "mixed_bfloat16",
            "--no-memory",
            "--skip-models",
            "--warmup",
            "1",
            "--repeats",
            "1",
        ]
    )
    assert [row["layer"] for row in result["layers"]] == ["conv1x1", "identity", "se", "eca"]
    assert result["env"]["precision"] == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"


def test_machine_line_names_the_users_onednn_variable(monkeypatch):
    """The benchmark measures TensorFlow's default; a forced oneDNN is named."""
    if keras.backend.backend() != "tensorflow" or machine.accelerator() is not None:
        pytest.skip("oneDNN is TensorFlow's CPU setting")
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    default = machine.onednn_note("tensorflow")
    assert default in (", oneDNN on", ", oneDNN off")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    assert machine.onednn_note("tensorflow") == default + " (TF_ENABLE_ONEDNN_OPTS=1)"


def test_unknown_layer_is_rejected():
    with pytest.raises(ValueError, match="nope"):
        cli.main(["--layers", "se,nope", "--shapes", "small", "--skip-models"])


@pytest.mark.skipif(
    not pathlib.Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable VmHWM"
)
def test_peak_memory_counts_at_least_the_output():
    """One fresh probe process: a call's peak includes its output (bytes, not timing)."""
    shape = [2, 64, 64, 64]
    peaks = memory.peak_memory(
        [{"name": "conv1x1", "kwargs": {}, "shape": shape}], "float32", False
    )
    output_bytes = 4 * np.prod(shape)
    assert peaks[0]["forward"] >= 0.9 * output_bytes
    assert peaks[0]["train"] >= 0.9 * peaks[0]["forward"]


def test_report_renders_targets_and_models():
    """The CCNet/non-local and ResNet-50 sections, from given measurements."""
    args = cli.parse_args(["--shapes", "small"])
    mib = 2.0**20
    peaks = {
        "non_local": {9: {"forward": 40 * mib, "train": 90 * mib}},
        "ccnet": {9: {"forward": 4 * mib, "train": 0.0}},
    }
    peaks["non_local"][5] = {"forward": 10 * mib, "train": 20 * mib}
    peaks["ccnet"][5] = {"forward": 2 * mib, "train": 3 * mib}
    targets = {"sizes": [5, 9], "target_size": 9, "channels": 32, "peaks": peaks}
    models = [
        {
            "attention": a,
            "params": 10,
            "train_ms": t,
            "train_ratio": t / 100,
            "infer_ms": 1.0,
            "infer_ratio": 1.0,
        }
        for a, t in (("none", 100.0), ("se", 104.0))
    ]
    text = report.render({"device": "cpu"}, args, [], targets, models)
    assert "non_local 40.0 MiB, ccnet 4.0 MiB: non_local / ccnet = **10.0x**" in text
    assert "ccnet 0.0 MiB: non_local / ccnet = **n/a**" in text  # no division by a zero peak
    # 40/10 MiB over 81/25 positions: log(4) / log(3.24) = 1.18
    assert "non_local ~ (H*W)^1.18" in text
    header, body = table(text, "| attention |")
    assert header[0] == "attention" and [row[0] for row in body] == ["none", "se"]
    assert body[1][3] == "1.040"


@pytest.mark.slow  # 36 s: two ResNet networks built and timed; the report rows run in CI
def test_segmentation_times_both_networks_beside_their_backbone(tmp_path):
    """--segmentation on resnet18 at 32x32: the three steps timed, peaks from one process."""
    output = tmp_path / "bench.md"
    argv = ["--shapes", "small", "--layers", "none", "--skip-models", "--skip-targets"]
    argv += ["--segmentation", "--seg-backbone", "resnet18", "--seg-size", "32"]
    result = cli.main(argv + ["--output", str(output)])
    header, body = table(output.read_text(), "| network |")
    assert header[3:5] == ["x backbone", "heads' share of the step"]
    assert [row[0] for row in body] == ["backbone", "danet", "ccnet"]
    rows = {row["network"]: row for row in result["segmentation"]}
    backbone = keras_attention.models.from_timm("resnet18", pretrained=False, features_only=True)
    assert rows["backbone"]["params"] == backbone.count_params() - non_trainable(backbone)
    for name in ("danet", "ccnet"):
        row = rows[name]
        assert row["params"] > rows["backbone"]["params"]
        # One round: share = 1 - backbone / network, the inverse of "x backbone".
        assert row["heads_share"] == pytest.approx(1 - 1 / row["x_backbone"])
        # The network's step holds the backbone's tensors and the heads' (logits and all).
        assert row["peak_mib"] > rows["backbone"]["peak_mib"] > 0
        assert row["heads_peak_mib"] == pytest.approx(
            row["peak_mib"] - rows["backbone"]["peak_mib"]
        )


def non_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)


def test_segmentation_losses_are_the_released_ones():
    model = segmentation.build("ccnet", 32, False, backbone="resnet18")
    assert model.output_names == ["logits", "aux_logits"]  # main, then dsn: as released
    assert model.get_compile_config()["loss_weights"] == [1.0, 0.4]  # CriterionDSN's
    x, y = segmentation.batch("ccnet", 32, 1)
    assert x.shape == (1, 32, 32, 3) and len(y) == 2 and y[0].max() < segmentation.CLASSES


def test_report_renders_the_segmentation_rows():
    args = cli.parse_args(["--shapes", "small", "--segmentation"])
    rows = [
        {"network": "backbone", "params": 10, "train_ms": 100.0, "x_backbone": 1.0,
         "heads_share": None, "peak_mib": 50.0, "heads_peak_mib": None},
        {"network": "danet", "params": 12, "train_ms": 125.0, "x_backbone": 1.25,
         "heads_share": 0.2, "peak_mib": 60.0, "heads_peak_mib": 10.0},
    ]  # fmt: skip
    text = report.render({"device": "cpu"}, args, [], None, None, seg_rows=rows)
    assert "## DANet and CCNet on resnet101s" in text and "1x64x64x3" in text
    assert "segmentation: 1 and 1);" in text  # its warm-up step and rounds
    _, body = table(text, "| network |")
    assert body[0] == ["backbone", "10", "100", "1.000", "n/a", "50", "n/a"]
    assert body[1] == ["danet", "12", "125", "1.250", "20.0%", "60", "10"]


def test_vs_timm_times_timm_beside_ours(tmp_path):
    """--vs-timm at tiny sizes: a timm row per layer that timm has, ratios reported."""
    pytest.importorskip("torch")
    output = tmp_path / "bench.md"
    result = cli.main(
        [
            "--layers",
            "se,eca,cbam,sk,non_local,stn",
            "--shapes",
            "small",
            "--vs-timm",
            "--no-memory",
            "--skip-models",
            "--skip-targets",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--output",
            str(output),
        ]
    )
    header, body = table(output.read_text(), "| layer | input | timm module |")
    assert header[4:] == [
        "ours fwd ms",
        "timm fwd ms",
        "ours/timm fwd",
        "ours fwd+bwd ms",
        "timm fwd+bwd ms",
        "ours/timm fwd+bwd",
    ]
    # stn has no timm equivalent: no row; every other layer has timm's module timed.
    assert [row[0] for row in body] == ["se", "eca", "cbam", "sk", "non_local"]
    assert [row[2] for row in body] == [
        "SEModule",
        "EcaModule",
        "CbamModule",
        "SelectiveKernel",
        "NonLocalAttn",
    ]
    for row in result["layers"]:
        if "timm" in row:
            assert row["timm_forward_ms"] > 0 and row["vs_timm_train"] > 0
    assert "torch 1" in result["env"]["threads"]


def test_timm_equivalents_do_the_same_work():
    """The table's timm modules have as many parameters as our layers."""
    pytest.importorskip("torch")
    timm = references.import_timm()
    shape = (1, 8, 8, 64)
    for name in ("se", "eca", "cbam", "channel_gate", "spatial_gate", "sk", "non_local"):
        kwargs = settings.layer_kwargs(name, shape)
        layer = keras_attention.get(name, **kwargs)
        layer.build(shape)
        module, note = references.timm_module(timm, name, layer, shape)
        assert note is None, (name, note)
        ours = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        theirs = sum(p.numel() for p in module.parameters())
        # timm's non-local has biases on phi, g and W that ours drops (a softmax over
        # keys and the BatchNormalization after W cancel them): 2 * C/2 + C weights.
        extra = 2 * 32 + 64 if name == "non_local" else 0
        assert ours + extra == theirs, (name, ours, theirs)


def test_timm_table_skips_layers_not_registered():
    names = settings.selected_layers("all")
    timm_names = [n for n in references.REFERENCES if n in names]
    assert {"se", "eca", "cbam", "sk", "non_local"} <= set(timm_names)
    shapes = settings.SHAPES["small"]
    grouped = [n for _, cases in layers.layer_cases(timm_names, shapes) for n, _ in cases]
    assert set(grouped) - {"conv1x1", "identity"} == set(timm_names)


def test_multi_input_layers_are_refused_by_name():
    assert settings.MULTI_INPUT == {"attention_gate"}
    with pytest.raises(ValueError, match="attention_gate.*several inputs"):
        settings.selected_layers("se,attention_gate")


def test_growth_table_alone_measures_halo_on_whole_blocks(monkeypatch):
    """--layers none --growth: memory only; halo at 96 for 97 (its 8x8 blocks tile 96)."""
    measured = []
    mib = 2.0**20

    def fake_peak_memory(cases, precision, jit):
        measured.extend(cases)
        # Peaks proportional to H*W (fwd) and to (H*W)^2 (fwd+bwd).
        return [
            {"forward": c["shape"][1] ** 2 * mib, "train": c["shape"][1] ** 4 * mib} for c in cases
        ]

    monkeypatch.setattr(targets_module, "peak_memory", fake_peak_memory)
    result = cli.main(
        ["--shapes", "timm", "--layers", "none", "--skip-models", "--growth", "halo,bot"]
    )
    assert result["layers"] == []  # nothing timed
    shapes = {(c["name"], c["shape"][1]): c for c in measured}
    assert sorted(shapes) == [("bot", 56), ("bot", 97), ("halo", 56), ("halo", 96)]
    assert shapes[("halo", 96)]["kwargs"]["block_size"] == 8
    assert shapes[("bot", 97)]["kwargs"]["feature_size"] == (97, 97)
    targets = result["targets"]
    assert targets["measured"]["halo"] == {56: 56, 97: 96}
    for name in ("halo", "bot"):  # exponents over the H*W measured, not the nominal one
        assert targets_module.growth_exponent(targets, name, "forward") == pytest.approx(1.0)
        assert targets_module.growth_exponent(targets, name, "train") == pytest.approx(2.0)
    text = report.render(result["env"], cli.parse_args([]), [], targets, None)
    header, body = table(text, "| layer | kwargs at the largest size |")
    assert header[-2:] == ["growth fwd", "growth fwd+bwd"]
    assert [row[:3] for row in body] == [
        ["halo", "num_heads=8, block_size=8, halo_size=4", "56, 96"],
        ["bot", "num_heads=4, feature_size=(97, 97)", "56, 97"],
    ]
    assert body[0][-2:] == ["1.00", "2.00"]
    assert "CCNet vs non-local" not in text  # the pair was not asked for


def test_growth_size_keeps_sizes_that_blocks_tile():
    assert settings.growth_size("halo", 97) == 96
    assert settings.growth_size("halo", 56) == 56
    assert settings.growth_size("halo", 5) == 5  # smaller than a block: layer_kwargs' block
    assert settings.growth_size("bot", 97) == 97


def test_keras_batch_norm_rows_time_the_layer_without_the_fast_path():
    """--keras-batch-norm: a second row for each layer holding BatchNormalization (SK), none
    for a layer without (SE); built inside the context, the layer holds Keras's own class."""
    result = cli.main(
        [
            "--layers",
            "se,sk",
            "--shapes",
            "small",
            "--keras-batch-norm",
            "--no-memory",
            "--skip-models",
            "--skip-targets",
            "--warmup",
            "0",
            "--repeats",
            "1",
        ]
    )
    assert [row["layer"] for row in result["layers"]] == [
        "conv1x1",
        "identity",
        "se",
        "sk",
        "sk (Keras BN)",
    ]
    twin = result["layers"][-1]
    assert twin["fused_vs_keras_bn_forward"] > 0 and twin["fused_vs_keras_bn_train"] > 0
    assert "fused_vs_keras_bn_train" not in result["layers"][-2]
    x = keras.ops.ones((1, 8, 8, 64))
    with calls.keras_batch_norm():
        before = keras_attention.get("sk")
        before(x)
    after = keras_attention.get("sk")
    after(x)
    assert not calls.holds_fused_batch_norm(before)
    assert calls.holds_fused_batch_norm(after)
    norms = [s for s in before._flatten_layers() if isinstance(s, keras.layers.BatchNormalization)]
    assert norms and all(type(s) is keras.layers.BatchNormalization for s in norms)


def test_report_renders_the_models_beside_timm():
    args = cli.parse_args(["--shapes", "small"])
    rows = [
        {"attention": "none", "params": 10, "train_ms": 100.0, "train_ratio": 1.0},
        {"attention": "se", "params": 12, "train_ms": 90.0, "train_ratio": 0.9},
        {"attention": "from_timm seresnet50", "params": 12, "train_ms": 80.0, "train_ratio": 0.8},
        {"attention": "timm seresnet50", "params": 12, "train_ms": 100.0, "train_ratio": 1.0},
    ]
    for row in rows:
        row.update(
            infer_ms=1.0, infer_ratio=1.0, in_resnet_table=row["attention"] in ("none", "se")
        )
    for row in rows[1:]:
        row["vs_timm_train"] = row["train_ms"] / 100.0
    text = report.render({"device": "cpu"}, args, [], None, rows)
    _, resnet = table(text, "| attention |")
    assert [row[0] for row in resnet] == ["none", "se"]
    header, body = table(text, "| model |")
    assert header == ["model", "trainable params", "train step ms", "ours/timm"]
    assert [row[0] for row in body] == ["se", "from_timm seresnet50", "timm seresnet50"]
    assert [row[3] for row in body] == ["0.900", "0.800", "1.000"]


def test_reference_table_builds_a_module_per_registered_layer():
    """Every entry of the reference table builds timm's module from our built layer, and it
    maps the input to an output of our layer's shape (NCHW there, NHWC here)."""
    pytest.importorskip("torch")
    timm = references.import_timm()
    names = [n for n in references.REFERENCES if n in settings.selected_layers("all")]
    assert {"se", "eca", "cbam", "sk", "non_local"} <= set(names)
    for shape, cases in layers.layer_cases(names, settings.SHAPES["small"]):
        x = np.random.default_rng(0).normal(size=shape).astype("float32")
        for name, kwargs in cases[2:]:  # after the baseline and the identity
            assert references.REFERENCES[name].reference == "timm"
            layer = keras_attention.get(name, **kwargs)
            ours = keras.ops.convert_to_numpy(layer(x))
            module, note = references.timm_module(timm, name, layer, shape)
            if name == "ge" and note and "ConvMlp" in note:
                continue  # timm's own GatherExcite(use_mlp=True) raises (its ConvMlp call)
            assert note is None, (name, note)
            theirs = module.eval()(timm.torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
            assert tuple(theirs.shape) == (ours.shape[0], ours.shape[3], *ours.shape[1:3]), name


def test_eca_reference_follows_our_padding():
    pytest.importorskip("torch")
    timm = references.import_timm()
    shape = (1, 4, 4, 64)
    classes = {}
    for padding in ("same", "circular"):
        layer = keras_attention.get("eca", padding=padding)
        layer.build(shape)
        module, _ = references.timm_module(timm, "eca", layer, shape)
        classes[padding] = type(module).__name__
    assert classes == {"same": "EcaModule", "circular": "CecaModule"}


# The command line's flags, kept from the single-file script.
FLAGS = [
    "--growth",
    "--help",
    "--jit-compile",
    "--keras-batch-norm",
    "--layers",
    "--max-attention-gib",
    "--max-forward-seconds",
    "--model-batch",
    "--model-repeats",
    "--model-size",
    "--models",
    "--no-layer-memory",
    "--no-memory",
    "--output",
    "--precision",
    "--repeats",
    "--seg-backbone",
    "--seg-batch",
    "--seg-repeats",
    "--seg-size",
    "--segmentation",
    "--shapes",
    "--skip-images",
    "--skip-models",
    "--skip-targets",
    "--threads",
    "--volume-inputs",
    "--volumes",
    "--vs-timm",
    "--warmup",
]


@pytest.mark.parametrize(
    "command",
    [["-m", "examples.benchmark"], [str(ROOT / "examples" / "benchmark")]],
    ids=["module", "folder"],
)
def test_both_invocations_print_every_flag(command, tmp_path):
    """`python -m examples.benchmark` (from the repository) and `python examples/benchmark`
    (from anywhere) run the same command line."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cwd = ROOT if command[0] == "-m" else tmp_path
    proc = subprocess.run(
        [sys.executable, *command, "--help"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(set(re.findall(r"--[a-z][a-z-]+", proc.stdout))) == FLAGS
    assert proc.stdout.startswith("usage: python -m examples.benchmark [-h] [--layers")


def test_volumes_run_times_the_3d_forms_and_names_the_others(tmp_path):
    """--volumes at tiny 5-D shapes, one round: SE's 3-D form at the clip and the volume,
    against the 1x1x1 convolution; TripletAttention (2-D only) listed with its reason."""
    output = tmp_path / "bench.md"
    result = cli.main(
        [
            "--layers",
            "se,triplet",
            "--volumes",
            "--skip-images",
            "--shapes",
            "small",
            "--skip-models",
            "--skip-targets",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--output",
            str(output),
        ]
    )
    assert result["layers"] == [] and result["targets"] is None  # --skip-images
    rows = result["volumes"]["rows"]
    small = settings.SHAPES["small"]["volumes"]
    assert [(r["layer"], r["label"], r["shape"]) for r in rows] == [
        (name, label, shape)
        for label, shape in small.items()
        for name in ("conv1x1", "identity", "se")
    ]
    assert all(len(r["shape"]) == 5 and r["train_ms"] > 0 for r in rows)
    assert all(r["forward_ratio"] == 1.0 for r in rows if r["layer"] == "conv1x1")
    reason = keras_attention.registry.get_class("triplet").no_volume_reason
    assert result["volumes"]["skipped"] == {"triplet": reason}
    assert result["volumes"]["failed"] == {}
    text = output.read_text()
    header, body = table(text, "| layer | kwargs | input | fwd ms |")
    assert header[-1] == "fwd+bwd x base" and len(body) == len(rows)
    assert body[2][2] == "clip " + "x".join(map(str, small["clip"]))
    assert f"Skipped, no 3-D form ({reason}): triplet." in text
    # SE's references, where their libraries load, in the same rounds.
    for row in (r for r in rows if r["layer"] == "se"):
        for ref in row["references"]:
            assert ref["library"] in ("monai", "timm_3d")
            assert ref["note"] is not None or ref["vs_train"] > 0


def _volume_input():
    """A 5-D NDHWC input that every layer's defaults accept (SGE, shuffle: 64-channel groups)."""
    shape = (1, 2, 4, 4, 128)
    return shape, np.random.default_rng(0).normal(size=shape).astype("float32")


@pytest.mark.parametrize(
    "name, index",
    [
        pytest.param(name, index, id=f"{name}-{entry.reference}")
        for name, entries in volume_references.VOLUME_REFERENCES.items()
        for index, entry in enumerate(entries)
    ],
)
def test_every_volume_reference_builds_and_keeps_our_output_shape(name, index):
    """Each 3-D reference module builds from our layer and maps a 5-D input (NCDHW) to our
    layer's output shape. Layers still 2-D are built on a 4-D input of the same channels
    (the arguments the table reads are the same in both ranks) and give the input's shape."""
    pytest.importorskip("torch")
    if name not in keras_attention.available():
        pytest.skip(f"{name} is not registered on this branch")
    entry = volume_references.VOLUME_REFERENCES[name][index]
    torch, note = volume_references.import_library(entry.reference)
    if torch is None:  # the reference libraries are optional
        pytest.skip(note)
    shape, x = _volume_input()
    layer = keras_attention.get(name, **settings.volume_kwargs(name))
    if settings.has_volume_form(name):
        expected = keras.ops.convert_to_numpy(layer(x)).shape
    else:
        layer.build(shape[:1] + shape[2:])
        expected = shape
    module, note = volume_references.volume_module(entry, layer, shape)
    assert note is None, (name, entry.reference, note)
    with torch.no_grad():
        theirs = module.eval()(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
    assert tuple(theirs.shape) == (expected[0], expected[-1], *expected[1:-1])


def test_volume_references_name_their_libraries():
    libraries = {e.reference for es in volume_references.VOLUME_REFERENCES.values() for e in es}
    assert libraries == {"monai", "timm_3d", "mmcv", "fvcore"}
    assert all(e.reference == "timm" for e in references.REFERENCES.values())


def test_volume_growth_measures_cubes_and_notes_a_missing_3d_form(monkeypatch):
    """The 3-D memory growth: 5-D cubes of growing side for the layers with a 3-D form, the
    exponent in D*H*W, and a note (no row) for one of the pair without its 3-D form."""
    measured = []
    mib = 2.0**20

    def fake_peak_memory(cases, precision, jit):
        measured.extend(cases)
        # Linear (fwd) and quadratic (fwd+bwd) in D*H*W.
        return [
            {"forward": c["shape"][1] ** 3 * mib, "train": c["shape"][1] ** 6 * mib} for c in cases
        ]

    monkeypatch.setattr(targets_module, "peak_memory", fake_peak_memory)
    monkeypatch.setattr(targets_module, "has_volume_form", lambda name: name == "non_local")
    args = cli.parse_args(["--shapes", "small", "--volumes"])
    result = targets_module.bench_volume_targets(["se", "non_local", "ccnet"], args, False)
    sides, channels = settings.SHAPES["small"]["volume_growth"], 16
    assert [c["shape"] for c in measured] == [[1, s, s, s, channels] for s in sides]
    assert {c["name"] for c in measured} == {"non_local"}
    assert measured[0]["kwargs"] == {"mode": "embedded_gaussian", "sub_sample": False}
    assert targets_module.volume_growth_exponent(result, "non_local", "forward") == pytest.approx(1)
    assert targets_module.volume_growth_exponent(result, "non_local", "train") == pytest.approx(2)
    reason = keras_attention.registry.get_class("ccnet").no_volume_reason
    assert result["notes"] == {"ccnet": reason}
    text = report.render({"device": "cpu"}, args, [], None, None, None, result)
    header, body = table(text, "| layer | kwargs |")
    assert header[:4] == ["layer", "kwargs", "3³ fwd MiB", "3³ fwd+bwd MiB"]
    assert [row[0] for row in body] == ["non_local"]
    assert body[0][-3:] == ["1.00", "2.00", "3³ to 4³"]
    assert f"- ccnet: no 3-D form on this build ({reason}); no row." in text


def test_split_by_volume_form_follows_spatial_ranks():
    names = settings.selected_layers("all")
    with_form, skipped = volumes.split_by_volume_form(names)
    assert "se" in with_form
    assert set(with_form) | set(skipped) == set(names)
    for name in names:
        cls = keras_attention.registry.get_class(name)
        assert (name in with_form) == (3 in cls.spatial_ranks)


def test_attention_gib_counts_query_key_pairs():
    """The attention-matrix size that gates --max-attention-gib, by hand: a 32³ volume has
    32768 queries; non-local's 1x2x2 sub-sampling leaves 32 * 16 * 16 = 8192 keys."""
    volume = (1, 32, 32, 32, 64)
    assert settings.attention_gib("non_local", {"sub_sample": True}, volume) == 1.0
    assert settings.attention_gib("non_local", {"sub_sample": False}, volume) == 4.0
    # A clip of 2 x 8 x 28 x 28: 6272 queries and keys per clip; odd sizes pool to ceil.
    assert settings.attention_gib("danet", {}, (2, 8, 28, 28, 256)) == 2 * 6272**2 * 4 / 2**30
    assert settings.attention_gib("non_local", {}, (1, 1, 3, 5, 8)) == 15 * 6 * 4 / 2**30
    assert settings.attention_gib("se", {}, volume) == 0.0
    assert settings.too_large("non_local", {}, volume, 1.0) is None
    assert "4.0 GiB" in settings.too_large("position_attention", {}, volume, 1.0)


def test_volume_flags_pick_inputs_and_keep_too_large_cases_in_the_table(tmp_path):
    """--volume-inputs and --max-attention-gib at tiny shapes: self-attention's 60 x 60
    matrices of the small clip (2 of them: 28,800 bytes) are over a 2e-5 GiB (21,475 bytes)
    budget and its row says so; the volume's 64 x 64 (16,384 bytes) is timed."""
    output = tmp_path / "bench.md"
    common = ["--skip-images", "--shapes", "small", "--skip-models", "--skip-targets"]
    common += ["--warmup", "0", "--repeats", "1", "--threads", "1"]
    result = cli.main(
        ["--layers", "self_attention", "--volumes", "--max-attention-gib", "2e-5"]
        + common
        + ["--output", str(output)]
    )
    rows = {(r["layer"], r["label"]): r for r in result["volumes"]["rows"]}
    assert "GiB (--max-attention-gib 2e-05)" in rows[("self_attention", "clip")]["not_run"]
    assert rows[("self_attention", "volume")]["train_ms"] > 0
    assert "not_run" not in rows[("conv1x1", "clip")]
    _, body = table(output.read_text(), "| layer | kwargs | input | fwd ms |")
    clip_row = next(r for r in body if r[0] == "self_attention" and r[2].startswith("clip"))
    assert (
        clip_row[3].startswith("not run: its float32 attention matrix") and clip_row[4:] == [""] * 3
    )
    # Any forward call is slower than a nanosecond: SE is left out, the baseline kept.
    only_volume = cli.main(
        [
            "--layers",
            "se",
            "--volumes",
            "--volume-inputs",
            "volume",
            "--max-forward-seconds",
            "1e-9",
        ]
        + common
    )
    rows = {r["layer"]: r for r in only_volume["volumes"]["rows"]}
    assert {r["label"] for r in rows.values()} == {"volume"} and len(rows) == 3
    assert rows["se"]["not_run"].startswith("not timed: one forward call took")
    assert rows["conv1x1"]["train_ms"] > 0 and rows["se"]["references"] == []
    with pytest.raises(SystemExit):
        cli.parse_args(["--volume-inputs", "frames"])
    assert cli.parse_args(["--volume-inputs", "none"]).volume_inputs == []


def test_volume_growth_leaves_out_cubes_over_the_attention_budget(monkeypatch):
    """Non-local without sub-sampling at 4³: 64 x 64 float32 (16,384 bytes), over a 1e-5
    GiB budget: not measured, said so, and no exponent from one cube; ccnet (no N x N
    matrix) is measured at every side."""
    monkeypatch.setattr(
        targets_module,
        "peak_memory",
        lambda cases, precision, jit: [{"forward": 1.0, "train": 2.0} for _ in cases],
    )
    args = cli.parse_args(["--shapes", "small", "--volumes", "--max-attention-gib", "1e-5"])
    result = targets_module.bench_volume_targets(["non_local", "ccnet"], args, False)
    assert list(result["peaks"]["non_local"]) == [3]
    assert list(result["not_run"]) == ["non_local"] and list(result["not_run"]["non_local"]) == [4]
    assert list(result["peaks"]["ccnet"]) == [3, 4]
    assert targets_module.volume_growth_exponent(result, "non_local", "forward") is None
    assert targets_module.volume_growth_exponent(result, "ccnet", "train") == 0.0
    text = report.render({"device": "cpu"}, args, [], None, None, None, result)
    _, body = table(text, "| layer | kwargs |")
    assert body[0][0] == "non_local" and body[0][4:6] == ["not run", "not run"]
    assert body[0][-1] == "n/a" and body[1][-1] == "3³ to 4³"
    assert "- non_local at 4³: not run: its float32 attention matrix" in text
