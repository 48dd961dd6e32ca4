"""Every example end to end, in-process through `main([...])` with tiny settings."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_attention
from keras_attention import data
from keras_attention.models import AttentionCNN
from keras_attention.models.timm import checkpoint as checkpoint_io

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)

import compare
import distribute
import gallery
import run_folder
import segmentation
import spatial_transformer
import train_classifier
import visualize_attention

QUICK = ["--limit", "64", "--epochs", "1", "--batch-size", "32", "--verbose", "0"]


def png_shape(path):
    import matplotlib.image

    return matplotlib.image.imread(path).shape


class Interrupt(Exception):
    pass


class InterruptAfterFirstEpoch(keras.callbacks.Callback):
    """Stands for a killed run: raises once epoch 1 is over (and backed up)."""

    def on_epoch_end(self, epoch, logs=None):
        raise Interrupt(epoch)


class EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_train_classifier_reports_the_saved_model(tmp_path):
    out = tmp_path / "run"
    summary = train_classifier.main(
        QUICK + ["--attention", "se", "--precision", "float32", "--output-dir", str(out)]
    )
    assert summary["parameters"] == AttentionCNN("se").count_params()
    assert summary["epochs_run"] == 1 and summary["first_epoch"] == 1
    assert json.loads((out / "summary.json").read_text()) == summary
    # The reported accuracy is that of model.keras, recomputed here from its predictions.
    model = keras.saving.load_model(out / "model.keras")
    _, (x_test, y_test) = data.load_digits()
    logits = np.asarray(model.predict(x_test[:64] / 255.0, verbose=0))
    assert logits.dtype == np.float32
    accuracy = np.mean(np.argmax(logits, axis=-1) == y_test[:64])
    assert summary["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert not (out / "backup").exists()  # a finished run leaves no backup behind


def test_finished_run_is_left_alone_unless_overwrite(tmp_path, capsys):
    argv = QUICK + ["--attention", "none", "--output-dir", str(tmp_path)]
    first = train_classifier.main(argv)
    saved = (tmp_path / "model.keras").stat().st_mtime_ns
    recorder = EpochRecorder()
    again = train_classifier.main(argv, callbacks=[recorder])
    assert recorder.epochs == [] and (tmp_path / "model.keras").stat().st_mtime_ns == saved
    assert again == {**first, "already_finished": True}
    assert "is a finished run" in capsys.readouterr().out
    recorder = EpochRecorder()
    train_classifier.main(argv + ["--overwrite"], callbacks=[recorder])
    assert recorder.epochs == [0]
    if os.path.isdir(tmp_path / "logs"):  # one set of curves, not two overlapping ones
        assert len(os.listdir(tmp_path / "logs" / "train")) == 1


def test_train_classifier_writes_tensorboard_logs(tmp_path):
    pytest.importorskip("tensorboard")
    train_classifier.main(QUICK + ["--attention", "none", "--output-dir", str(tmp_path)])
    assert os.listdir(tmp_path / "logs" / "train")


def test_train_classifier_mixed_precision_keeps_float32_logits(tmp_path):
    summary = train_classifier.main(
        QUICK
        + ["--attention", "cbam", "--precision", "mixed_bfloat16", "--output-dir", str(tmp_path)]
    )
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert model.get_layer("stage1_attention").compute_dtype == "bfloat16"
    assert model.output.dtype == "float32" and summary["precision"] == "mixed_bfloat16"


class TrainingRecorder(keras.callbacks.Callback):
    """Keeps each batch's loss and the optimizer that fit() trains with."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        self.optimizer = self.model.optimizer


def test_train_classifier_under_mixed_float16_scales_the_loss(tmp_path):
    recorder = TrainingRecorder()
    summary = train_classifier.main(
        QUICK
        + ["--attention", "cbam", "--precision", "mixed_float16", "--output-dir", str(tmp_path)],
        callbacks=[recorder],
    )
    assert summary["precision"] == "mixed_float16"
    assert len(recorder.losses) == 2 and np.isfinite(recorder.losses).all()
    assert np.isfinite(summary["test_loss"])
    # compile() wraps the example's Adam itself (auto_scale_loss).
    optimizer = recorder.optimizer
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert optimizer.name == "loss_scale_optimizer"
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adam)
    assert np.isfinite(float(optimizer.dynamic_scale))
    # Each step either applied finite float32 gradients or halved the scale.
    skipped = round(np.log2(optimizer.initial_scale / float(optimizer.dynamic_scale)))
    assert int(optimizer.inner_optimizer.iterations) + skipped == 2


def test_killed_run_resumes_from_the_next_epoch(tmp_path, capsys):
    argv = QUICK[:2] + ["--epochs", "3", "--batch-size", "32", "--verbose", "0"]
    argv += ["--attention", "eca", "--output-dir", str(tmp_path)]
    with pytest.raises(Interrupt):
        train_classifier.main(argv, callbacks=[InterruptAfterFirstEpoch()])
    assert (tmp_path / "backup").exists()
    recorder = EpochRecorder()
    summary = train_classifier.main(argv, callbacks=[recorder])
    assert "Resumed at epoch 1 " in capsys.readouterr().out
    assert recorder.epochs == [1, 2]  # epoch 0 is not trained again
    assert summary["first_epoch"] == 2 and summary["epochs_run"] == 2


def test_train_classifier_on_a_tfds_dataset(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=32):
        summary = train_classifier.main(
            ["--dataset", "mnist", "--epochs", "1", "--batch-size", "16", "--verbose", "0"]
            + ["--attention", "se", "--output-dir", str(tmp_path)]
        )
    assert summary["dataset"] == "mnist" and 0.0 <= summary["test_accuracy"] <= 1.0


OFFLINE = """
import runpy, socket, sys, time
import keras, tensorflow_datasets  # imported first: their import time is not the point


def refuse(*args, **kwargs):
    raise OSError("network is unreachable (test)")


socket.create_connection = refuse  # no network, whatever this machine has
sys.argv = [{script!r}, "--dataset", "cifar10"]
start = time.perf_counter()
try:
    runpy.run_path({script!r}, run_name="__main__")
finally:
    print("SECONDS", time.perf_counter() - start)
"""


def test_tfds_dataset_offline_stops_in_seconds_with_one_line(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    script = os.path.join(EXAMPLES, "train_classifier.py")
    env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path), KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE.format(script=script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,  # the exit status is asserted below
        cwd=tmp_path,
    )
    seconds = float(result.stdout.split("SECONDS")[-1])
    assert seconds < 60  # TFDS alone retried for 3 min 45 s (a few seconds on an idle machine)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: The TFDS dataset 'cifar10' is not downloaded")
    assert "'digits'" in last


def test_attention_choices_follow_the_registry():
    assert train_classifier.attention_choices() == ["none"] + keras_attention.available()
    with pytest.raises(SystemExit):
        train_classifier.parse_args(["--attention", "no_such_mechanism"])


def test_model_choices_are_sized_for_small_images():
    resnet = train_classifier.build_model("resnet18", "se", (64, 64, 1), 10)
    assert resnet.name == "se_resnet18" and resnet.output.dtype == "float32"
    assert tuple(resnet.output.shape) == (None, 10)
    # 28x28 digits get the Residual Attention Network's CIFAR stem: a 3x3 stride-1 conv.
    ran = train_classifier.build_model("ran56", "none", (28, 28, 1), 10)
    assert ran.get_layer("conv1_conv").kernel_size == (3, 3)
    assert ran.get_layer("conv1_conv").strides == (1, 1)


DISTRIBUTE = """
import os, sys
sys.path.insert(0, {examples!r})
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import train_classifier
summary = train_classifier.main({argv!r})
print("ACCURACY", summary["test_accuracy"])
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_distribute_on_two_cpu_devices(backend, tmp_path):
    pytest.importorskip(backend)
    argv = QUICK + ["--attention", "se", "--distribute", "--output-dir", str(tmp_path)]
    env = dict(
        os.environ, KERAS_BACKEND=backend, XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    result = subprocess.run(
        [sys.executable, "-c", DISTRIBUTE.format(examples=EXAMPLES, argv=argv)],
        env=env,
        check=False,  # the return code is asserted below, with stderr
        capture_output=True,
        text=True,
        timeout=600,  # a shared 2-core machine can take minutes
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s)" in result.stdout
    assert "ACCURACY" in result.stdout and (tmp_path / "model.keras").exists()


def test_distribute_on_one_device_warns(capsys):
    pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the TensorFlow strategy is the one checked here")
    import tensorflow as tf

    if len(tf.config.list_logical_devices("CPU")) + len(tf.config.list_logical_devices("GPU")) > 1:
        pytest.skip("this machine has several devices")
    distribution = distribute.start("local")
    err = capsys.readouterr().err
    assert distribution.replicas == 1 and "--distribute found one device" in err
    assert "several GPUs" in err and "set_logical_device_configuration" in err


def test_distribute_modes(monkeypatch):
    assert train_classifier.parse_args([]).distribute is None
    assert train_classifier.parse_args(["--distribute"]).distribute == "local"
    assert train_classifier.parse_args(["--distribute", "multiworker"]).distribute == "multiworker"
    with pytest.raises(SystemExit):
        train_classifier.parse_args(["--distribute", "everywhere"])
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(ValueError, match="TF_CONFIG"):
            distribute.start("multiworker")
    else:
        with pytest.raises(ValueError, match="MultiWorkerMirroredStrategy"):
            distribute.start("multiworker")


def test_loader_names_the_missing_import(tmp_path):
    import zipfile

    path = tmp_path / "model.keras"
    inputs = keras.Input((8, 8, 4))
    keras.Model(inputs, keras_attention.layers.SqueezeExcitation(reduction=2)(inputs)).save(path)
    # A file naming a keras_attention layer that is not registered (as without the import).
    edited = tmp_path / "edited.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "config.json":
                content = content.replace(b"SqueezeExcitation", b"NotRegistered")
            target.writestr(item, content)
    with pytest.raises((TypeError, ValueError), match="`import keras_attention` before loading"):
        run_folder.load_model(str(edited))


def test_compare_tabulates_each_mechanism(tmp_path):
    rows = compare.main(QUICK[:-2] + ["--attention", "none,se", "--output-dir", str(tmp_path)])
    assert [row["mechanism"] for row in rows] == ["none", "se"]
    added = AttentionCNN("se").count_params() - AttentionCNN(None).count_params()
    assert rows[1]["added_parameters"] == added and rows[0]["added_parameters"] == 0
    table = (tmp_path / "compare.md").read_text()
    assert "| se |" in table and "| none |" in table
    assert (tmp_path / "compare.csv").read_text().splitlines()[0].startswith("mechanism,")


def test_compare_leaves_out_stn_and_residual_by_default():
    mechanisms = compare.parse_args([]).attention
    assert "stn" not in mechanisms and "residual" not in mechanisms
    # Two inputs, or a size argument: not runnable with default arguments.
    assert not {"attention_gate", "bot", "axial", "halo"} & set(mechanisms)
    assert {"none", "se", "cbam"} <= set(mechanisms)


def test_spatial_transformer_example(tmp_path):
    results = spatial_transformer.main(QUICK + ["--output-dir", str(tmp_path)])
    assert set(results) == {"stn_classifier", "plain_cnn"}
    # The plain CNN is the STN classifier's CNN: they differ by the transformer alone.
    stn = keras.saving.load_model(tmp_path / "stn_classifier" / "model.keras")
    extra = stn.get_layer("spatial_transformer").count_params()
    assert results["stn_classifier"]["parameters"] - results["plain_cnn"]["parameters"] == extra
    assert png_shape(tmp_path / "stn_warps.png")[0] > 100
    for name in ("stn_classifier", "plain_cnn"):  # run folders as train_classifier's
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["test_accuracy"] == results[name]["test_accuracy"]
        assert not (tmp_path / name / "backup").exists()


def test_segmentation_example(tmp_path):
    results = segmentation.main(
        ["--limit", "16", "--epochs", "1", "--batch-size", "8", "--verbose", "0"]
        + ["--output-dir", str(tmp_path)]
    )
    assert set(results) == {"danet", "ccnet"}
    assert all(0.0 <= r["miou"] <= 1.0 for r in results.values())
    assert png_shape(tmp_path / "segmentation.png")[0] > 100
    for name in ("danet", "ccnet"):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["miou"] == results[name]["miou"]
        keras.saving.load_model(tmp_path / name / "model.keras")


def test_segmentation_short_run_says_it_is_short(tmp_path, capsys):
    argv = ["--models", "ccnet", "--limit", "16", "--epochs", "1", "--batch-size", "8"]
    segmentation.main(argv + ["--verbose", "0", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Note: 2 training steps are too few for this model" in out
    assert "predict the background everywhere" in out


def test_segmentation_warns_when_one_class_fills_the_prediction():
    names = segmentation.CLASS_NAMES[data.DIGITS]
    summary = {"model": "danet", "miou": 0.0864, "epochs": 2}
    background = segmentation.one_class_warning(
        {**summary, "predicted_shares": [0.995, 0.005] + [0.0] * 9}, names
    )
    assert background.startswith("Warning: danet predicts 'background' for 99.5%")
    assert "mIoU 0.0864" in background and "--epochs" in background
    learned = {**summary, "predicted_shares": [0.9, 0.05, 0.05] + [0.0] * 8}
    assert segmentation.one_class_warning(learned, names) is None


def test_mean_iou_by_hand():
    # Class 0: TP 5, FP 1, FN 2 -> 5/8; class 1: TP 3, FP 2, FN 1 -> 3/6; class 2 absent.
    counts = np.array([[5, 2, 0], [1, 3, 0], [0, 0, 0]])
    assert segmentation.mean_iou(counts) == pytest.approx((5 / 8 + 3 / 6) / 2)


def test_class_iou_by_hand():
    # As above; class 2 is in neither truth nor prediction: no IoU, not 0.
    counts = np.array([[5, 2, 0], [1, 3, 0], [0, 0, 0]])
    assert segmentation.class_iou(counts) == pytest.approx([5 / 8, 3 / 6, None])
    line = segmentation.iou_line({"class_iou": [0.625, 0.5, None]}, ["a", "b", "c"])
    assert line == "a 0.6250, b 0.5000, c n/a"


def test_query_pixels_one_per_class_largest_first():
    # An 8x8 mask read on a 4x4 grid (cell centres at 1, 3, 5, 7): class 2 covers the
    # right half (8 cells), class 1 rows 0-2 of the left half (6), class 0 the rest (2).
    mask = np.zeros((8, 8), "int32")
    mask[:, 4:] = 2
    mask[:6, :4] = 1
    queries = segmentation.query_pixels(mask, 4, 4, count=2)
    # Class 2's cells' mean is (1.5, 2.5): the nearest cell, first in row-major order,
    # is (1, 2); class 1's mean (1, 0.5) -> (1, 0).
    assert queries == [(1, 2, 2), (1, 0, 1)]
    assert len(segmentation.query_pixels(mask, 4, 4, count=5)) == 3  # one per class


def test_segmentation_on_a_timm_backbone_offline(tmp_path, monkeypatch, capsys):
    def offline(config):
        raise checkpoint_io.WeightsUnavailableError(f"no network for {config['name']}")

    monkeypatch.setattr(checkpoint_io, "download", offline)
    argv = ["--backbone", "resnet18", "--image-size", "32", "--models", "danet", "--limit", "16"]
    argv += ["--epochs", "1", "--batch-size", "8", "--verbose", "0", "--queries", "2"]
    results = segmentation.main(argv + ["--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert "resnet18 backbone starts from random weights" in err and "no network" in err
    result = results["danet"]
    assert 0.0 <= result["miou"] <= 1.0
    present = [v for v in result["class_iou"] if v is not None]
    assert len(result["class_iou"]) == 11 and all(0.0 <= v <= 1.0 for v in present)
    assert result["miou"] == pytest.approx(np.mean(present))  # the mean of the present ones
    folder = tmp_path / "danet_resnet18_os8_random"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["backbone"] == "resnet18" and summary["pretrained"] is False
    reloaded = keras.saving.load_model(folder / "model.keras")
    assert reloaded.get_layer("resnet18").input_shape == (None, 32, 32, 3)  # digits made RGB
    assert png_shape(tmp_path / "segmentation.png")[0] > 100
    assert png_shape(tmp_path / "danet_position_attention.png")[0] > 100


def test_segmentation_pretrained_yes_stops_offline(tmp_path, monkeypatch):
    def offline(config):
        raise checkpoint_io.WeightsUnavailableError("offline")

    monkeypatch.setattr(checkpoint_io, "download", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(checkpoint_io.WeightsUnavailableError):
        segmentation.main(["--backbone", "resnet18", "--pretrained", "yes"])
    assert not (tmp_path / "runs").exists()  # stopped before the data and the folders


@pytest.mark.parametrize(
    "argv",
    [
        ["--output-stride", "16"],  # without --backbone
        ["--checkpoint", "model.safetensors"],
        ["--backbone", "resnet18", "--checkpoint", "m.safetensors", "--pretrained", "no"],
        ["--backbone", "resnet_18"],
        ["--queries", "0"],
    ],
)
def test_segmentation_bad_backbone_flags(argv, capsys):
    with pytest.raises(SystemExit):
        segmentation.parse_args(argv)
    assert "error:" in capsys.readouterr().err


def test_position_attention_layer_of_both_danets():
    small = keras_attention.models.DANet(3, (32, 32, 3))
    assert segmentation.position_attention_layer(small)[1] == "dual_attention/position"
    published = keras_attention.models.DANet(3, (32, 32, 3), backbone="resnet18", pretrained=False)
    assert segmentation.position_attention_layer(published)[1] == "head_sa"
    ccnet = keras_attention.models.CCNet(3, (32, 32, 3))
    assert segmentation.position_attention_layer(ccnet) == (None, None)


def saved_model_with_attention(path):
    layers = keras_attention.layers
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = layers.CBAM(reduction=2, name="cbam")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = layers.SelfAttention2D(name="self_attention")(x)
    x = layers.CrissCrossAttention(name="criss_cross")(x)
    x = layers.ChannelAttention(name="channel_affinity")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(10)(x)).save(path)


def test_visualize_attention_writes_a_png_per_map(tmp_path):
    saved_model_with_attention(tmp_path / "model.keras")
    results = visualize_attention.main(
        [
            "--model",
            str(tmp_path / "model.keras"),
            "--num-images",
            "2",
            "--output-dir",
            str(tmp_path / "maps"),
        ]
    )
    assert set(results) == {
        "cbam/channel",
        "cbam/spatial",
        "self_attention",
        "criss_cross",
        "channel_affinity",
    }
    for name in ("cbam/channel", "cbam/spatial", "self_attention", "criss_cross"):
        assert png_shape(results[name])[0] > 50
    assert "not a spatial map" in results["channel_affinity"]


def test_criss_cross_map_is_the_centre_pixels_cross():
    height, width = 3, 4
    weights = np.random.default_rng(0).uniform(size=(1, height, width, height + width))
    kind, maps, query = visualize_attention.describe(weights, height, width)
    i, j = 1, 2
    expected = np.zeros((height, width))
    expected[:, j] = weights[0, i, j, :height]
    for k in range(width):
        expected[i, k] += weights[0, i, j, height + k]
    assert kind == "spatial" and query == (i, j)
    np.testing.assert_allclose(maps[0], expected, rtol=1e-6)
    # channels_first moves the last axis to 1; the same map comes out.
    moved = np.moveaxis(weights, -1, 1)
    _, again, _ = visualize_attention.describe(moved, height, width, "channels_first")
    np.testing.assert_allclose(again, maps, rtol=1e-6)


def test_pairwise_map_is_the_centre_querys_row():
    height, width = 3, 5
    weights = np.random.default_rng(0).uniform(size=(2, height * width, height * width))
    kind, maps, query = visualize_attention.describe(weights, height, width)
    centre = 1 * width + 2
    assert kind == "spatial" and query == (1, 2)
    np.testing.assert_array_equal(maps[1], weights[1, centre].reshape(height, width))
    kind, _, _ = visualize_attention.describe(weights[:, :, :4], height, width)
    assert kind == "skip"


def test_any_layer_is_drawn_by_the_shape_of_its_map():
    rng = np.random.default_rng(0)
    height, width = 4, 6
    # Multi-head pairwise maps: heads averaged.
    heads = rng.uniform(size=(2, 3, height * width, height * width))
    kind, maps, query = visualize_attention.describe(heads, height, width)
    centre = 2 * width + 3
    assert kind == "spatial" and query == (2, 3)
    np.testing.assert_allclose(maps, heads[:, :, centre].mean(axis=1).reshape(2, height, width))
    # Keys on a 2x2 max-pooled grid (non-local sub-sampling): the query marked on that grid.
    pooled = rng.uniform(size=(2, height * width, 2 * 3))
    kind, maps, query = visualize_attention.describe(pooled, height, width)
    assert kind == "spatial" and maps.shape == (2, 2, 3) and query == (1, 1)
    # Per-pixel weights over window cells (local attention): averaged per pixel.
    local = rng.uniform(size=(2, height, width, 2, 9))
    kind, maps, query = visualize_attention.describe(local, height, width)
    assert kind == "spatial" and query is None
    np.testing.assert_allclose(maps, local.reshape(2, height, width, -1).mean(axis=-1))
    # A gate per channel: bars. A (C, C) affinity or a (2, 3) matrix: skipped.
    assert visualize_attention.describe(rng.uniform(size=(2, 8)), height, width)[0] == "bars"
    assert visualize_attention.describe(rng.uniform(size=(2, 8, 8)), height, width)[0] == "skip"
    assert visualize_attention.describe(rng.uniform(size=(2, 2, 3)), height, width)[0] == "skip"
    # One weight per position (GC's attention pooling): the map itself.
    pooling = rng.uniform(size=(2, height, width))
    kind, maps, _ = visualize_attention.describe(pooling, height, width)
    assert kind == "spatial" and maps is pooling
    # Branch weights (SK), named by MAP_LAYOUTS: the first branch's share per channel.
    branches = rng.uniform(size=(2, 2, 8))
    kind, maps, _ = visualize_attention.describe(branches, height, width, layout="branches")
    assert kind == "bars"
    np.testing.assert_array_equal(maps, branches[:, 0])


def test_attention_figure_shares_one_scale_and_labels_each_panel():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 8, 8, 1)).astype("float32")
    maps = rng.uniform(size=(3, 4, 4)).astype("float32")
    maps[1] *= 5  # one panel's map larger: a shared scale must show it
    fig = visualize_attention.figure(
        "layer", "spatial", maps, images, labels=[1, 2, 3], predictions=[1, 0, 3], query=(2, 1)
    )
    panels, colorbar = fig.axes[:3], fig.axes[3:]
    assert len(colorbar) == 1  # one colorbar for all panels
    # The colorbar sits right of the last panel, inside the figure, overlapping none.
    fig.canvas.draw()
    bar = colorbar[0].get_position()
    assert all(bar.x0 > ax.get_position().x1 for ax in panels)
    assert bar.x1 <= 1.0
    overlays = [ax.get_images()[1] for ax in panels]
    assert {overlay.get_clim() for overlay in overlays} == {(maps.min(), maps.max())}
    assert [ax.get_title() for ax in panels] == [
        "true 1, pred 1",
        "true 2, pred 0",
        "true 3, pred 3",
    ]
    assert panels[1].title.get_color() == "red" and panels[0].title.get_color() == "black"
    # The query pixel (2, 1) of a 4x4 grid marked at its cell's centre on the 8x8 image.
    (marker,) = panels[0].get_lines()
    assert tuple(marker.get_xydata()[0]) == (2.5, 4.5)
    plt.close(fig)


def test_units_maps_show_the_unit_that_varies_most():
    """(batch, H*W, n) over units: n = H*W would pass for pairwise weights by shape alone."""
    rng = np.random.default_rng(0)
    height, width = 4, 4
    weights = rng.uniform(0.4, 0.6, size=(2, height * width, height * width))
    weights[:, :, 5] = rng.uniform(0, 1, size=(2, height * width))  # the most varying unit
    kind, maps, query = visualize_attention.describe(weights, height, width, layout="units")
    assert kind == "spatial" and query is None
    np.testing.assert_array_equal(maps, weights[:, :, 5].reshape(2, height, width))
    layer = keras_attention.layers.ExternalAttention()
    assert visualize_attention.map_layout(layer, "external") == "units"
    assert visualize_attention.map_layout(keras_attention.layers.DoubleAttention(), "a2/gather")
    assert visualize_attention.map_layout(layer, "external/other") is None


def test_axial_maps_are_the_centre_pixels_column_and_row():
    rng = np.random.default_rng(0)
    height, width, heads = 3, 5, 2
    along_height = rng.uniform(size=(2, width, heads, height, height))
    along_width = rng.uniform(size=(2, height, heads, width, width))
    i, j = 1, 2
    kind, maps, query = visualize_attention.describe(along_height, height, width, layout="height")
    assert kind == "spatial" and query == (i, j)
    expected = np.zeros((2, height, width))
    expected[:, :, j] = along_height[:, j, :, i, :].mean(axis=1)
    np.testing.assert_allclose(maps, expected, rtol=1e-6)
    _, maps, _ = visualize_attention.describe(along_width, height, width, layout="width")
    expected = np.zeros((2, height, width))
    expected[:, i, :] = along_width[:, i, :, j, :].mean(axis=1)
    np.testing.assert_allclose(maps, expected, rtol=1e-6)


def test_halo_map_is_the_centre_querys_window_on_the_map():
    rng = np.random.default_rng(0)
    height, width, block, halo, heads = 8, 12, 4, 1, 2
    window = block + 2 * halo
    blocks = (height // block) * (width // block)
    weights = rng.uniform(size=(1, blocks, heads, block**2, window**2))
    kind, maps, query = visualize_attention.describe(weights, height, width)
    assert kind == "spatial" and query == (4, 6)
    # The centre (4, 6) is in block (1, 1) (index 4) at query slot (0, 2); its window
    # starts one pixel above and left of the block's corner (4, 4).
    expected = np.zeros((height, width))
    for a in range(window):
        for b in range(window):
            row, column = 4 - halo + a, 4 - halo + b
            if 0 <= row < height and 0 <= column < width:
                expected[row, column] = weights[0, 4, :, 2, a * window + b].mean()
    np.testing.assert_allclose(maps[0], expected, rtol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_outlook_map_is_what_the_centre_pixel_takes_from_each_pixel(stride):
    """Checked against the layer: identity value and projection, one-hot inputs."""
    height, width, kernel = 5, 6, 3
    layer = keras_attention.layers.OutlookAttention(kernel_size=kernel, stride=stride)
    rng = np.random.default_rng(0)
    layer.build((None, height, width, 2))
    layer.value.set_weights([np.eye(2, dtype="float32")])
    layer.projection.set_weights([np.eye(2, dtype="float32"), np.zeros(2, "float32")])
    # The weights read channel 0 only (the same content in every sample); channel 1 is
    # a one-hot at pixel q, so output channel 1 at p is the weight of q for p.
    attention_kernel = rng.normal(size=(2, kernel**4)).astype("float32") * 3
    attention_kernel[1] = 0
    layer.attention.set_weights([attention_kernel, np.zeros(kernel**4, "float32")])
    x = np.zeros((height * width, height, width, 2), "float32")
    x[:, :, :, 0] = rng.normal(size=(height, width))
    x[np.arange(height * width), :, :, 1] = np.eye(height * width).reshape(-1, height, width)
    outputs, weights = layer(x, return_attention=True)
    taken = np.asarray(outputs)[:, height // 2, width // 2, 1].reshape(height, width)
    kind, maps, query = visualize_attention.describe(np.asarray(weights)[:1], height, width)
    assert kind == "spatial" and query == (height // 2, width // 2)
    np.testing.assert_allclose(maps[0], taken, rtol=1e-5, atol=1e-6)


def test_the_self_attention_layers_are_drawn():
    """Each map of the catalogue's self-attention layers is drawn, at a small size."""
    layers = keras_attention.layers
    size, channels = 8, 64
    cases = {
        "bot": layers.BottleneckSelfAttention(feature_size=(size, size)),
        "halo": layers.HaloAttention(block_size=4, halo_size=1, num_heads=4),
        "lambda": layers.LambdaLayer(),
        "a2": layers.DoubleAttention(),
        "external": layers.ExternalAttention(),
        "polarized": layers.PolarizedSelfAttention(),
        "axial": layers.AxialAttention(span=(size, size)),
        "cot": layers.ContextualTransformer(),
        "outlook": layers.OutlookAttention(num_heads=2),
    }
    x = np.random.default_rng(0).normal(size=(2, size, size, channels)).astype("float32")
    kinds = {}
    for name, layer in cases.items():
        _, attention = layer(x, return_attention=True)
        maps = attention if isinstance(attention, dict) else {None: attention}
        for key, value in maps.items():
            full = name if key is None else f"{name}/{key}"
            layout = visualize_attention.map_layout(layer, full)
            kind, drawn, _ = visualize_attention.describe(
                np.asarray(value), size, size, layout=layout
            )
            kinds[full] = kind
            if kind == "spatial":
                assert drawn.shape[0] == 2 and np.ptp(drawn) > 0, full  # not a flat map
    assert kinds.pop("polarized/channel") == "bars"
    # Not maps over positions: lambda's (key_dim, C / heads) lambda, CoT's per-channel mix.
    assert kinds.pop("lambda/content_lambda") == kinds.pop("cot/fusion") == "skip"
    assert set(kinds.values()) == {"spatial"}


def open_text(path):
    with open(path) as f:
        return f.read()


def gallery_run(tmp_path, *argv):
    out = tmp_path / "gallery"
    pages = gallery.main(
        ["--limit", "64", "--num-images", "2", "--output-dir", str(out)]
        + ["--pages-dir", str(tmp_path / "pages"), "--model", str(tmp_path / "m.keras"), *argv]
    )
    with open(out / "gallery.json") as f:
        return out, pages, json.load(f)


def test_gallery_draws_one_picture_per_registered_layer(tmp_path):
    out, pages, info = gallery_run(tmp_path, "--epochs", "0")
    names = keras_attention.available()
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{n}.png" for n in names)
    assert all(png_shape(out / f"{n}.png")[0] > 50 for n in names)
    assert sorted(info["accuracy"]) == names
    text = {os.path.basename(p): open_text(p) for p in pages}
    assert all(f"(../gallery/{n}.png)" in "".join(text.values()) for n in names)
    # Layers whose weights have no picture show their output instead, and say so.
    assert [key for key, why in info["maps"]["stn"]] == ["stn_attention"]
    assert "No attention map to draw" in text["spatial.md"]


def test_gallery_trains_its_branches_and_reports_their_accuracy(tmp_path):
    out, _, info = gallery_run(tmp_path, "--epochs", "1", "--layers", "se,cbam")
    assert info["epochs"] == 1 and info["train_digits"] == 64
    model = keras.saving.load_model(tmp_path / "m.keras")
    _, (x_test, y_test) = data.load_digits()
    logits = model.predict(x_test[:64].astype("float32") / 255.0, verbose=0)
    for name in ("se", "cbam"):
        accuracy = np.mean(np.argmax(logits[name], axis=-1) == y_test[:64])
        assert info["accuracy"][name] == pytest.approx(accuracy, abs=1e-6)
    assert sorted(p.name for p in out.glob("*.png")) == ["cbam.png", "se.png"]


def is_script(name):
    """A runnable example file (the benchmark package has its own --help tests)."""
    path = os.path.join(EXAMPLES, name)
    if not (name.endswith(".py") and os.path.isfile(path)):
        return False
    with open(path) as f:
        return "__main__" in f.read()


SCRIPTS = sorted(name[:-3] for name in os.listdir(EXAMPLES) if is_script(name))


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_is_readable(script, capsys):
    module = __import__(script)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]
    assert "Title:" not in text and "Author:" not in text and "Description:" not in text
    assert description.endswith(".") and "\n" not in description  # the title, one line
    for option in re.split(r"\n  -", text.split("options:")[1]):
        entry = " ".join(option.split())
        if "default" in entry.lower().replace("(default:", ""):  # a stated default ...
            assert "(default:" not in entry, entry  # ... is not repeated
    assert "(default: None)" not in text
    if script == "finetune":
        assert "--overwrite" in text
        verbose = text.rsplit("--verbose {0,1,2}", 1)[1]
        assert verbose.split()[0] == "Keras"  # --verbose has a help text
