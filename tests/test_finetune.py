"""examples/finetune.py end to end, offline: a small random checkpoint made locally."""

import os
import sys

import keras
import numpy as np
import pytest
from timm_import import import_timm

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)

import finetune

QUICK = ["--limit", "48", "--batch-size", "16", "--image-size", "32", "--verbose", "0"]


class Interrupt(Exception):
    pass


class InterruptAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise Interrupt(epoch)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from safetensors.torch import save_file

    model = import_timm().create_model("resnet18", pretrained=False)
    path = str(tmp_path_factory.mktemp("ckpt") / "resnet18.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


def test_finetune_freezes_then_unfreezes_and_saves(checkpoint, tmp_path):
    out = str(tmp_path / "run")
    argv = ["--model", "resnet18", "--checkpoint", checkpoint, "--output-dir", out]
    argv += QUICK + ["--frozen-epochs", "1", "--epochs", "2", "--precision", "float32"]
    summary = finetune.main(argv)
    assert summary["unfrozen_epochs_run"] == 1
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    # Phase 1 trained the classifier only: the backbone still holds the checkpoint.
    from safetensors.numpy import load_file

    state = load_file(checkpoint)
    frozen = keras.saving.load_model(os.path.join(out, "frozen.keras"))
    np.testing.assert_array_equal(
        frozen.get_layer("layer1_0_conv1").kernel.numpy()
        if hasattr(frozen.get_layer("layer1_0_conv1").kernel, "numpy")
        else keras.ops.convert_to_numpy(frozen.get_layer("layer1_0_conv1").kernel),
        state["layer1.0.conv1.weight"].transpose(2, 3, 1, 0),
    )
    assert frozen.output.shape == (None, 10)
    final = keras.saving.load_model(summary["model_path"])
    assert final.get_layer("preprocessing") is not None  # the checkpoint's mean/std


def test_finetune_resumes_after_a_kill(checkpoint, tmp_path):
    out = str(tmp_path / "run")
    argv = ["--model", "resnet18", "--checkpoint", checkpoint, "--output-dir", out]
    argv += QUICK + ["--frozen-epochs", "1", "--epochs", "3", "--precision", "float32"]
    with pytest.raises(Interrupt):  # killed at the end of phase 1's only epoch
        finetune.main(argv, callbacks=[InterruptAfterFirstEpoch()])
    with pytest.raises(Interrupt):  # phase 1 restored and saved; killed after phase 2's epoch 0
        finetune.main(argv, callbacks=[InterruptAfterFirstEpoch()])
    summary = finetune.main(argv)  # phase 1 skipped; phase 2 runs its last epoch only
    assert summary["unfrozen_epochs_run"] == 1
    assert os.path.exists(summary["model_path"])


def test_offline_without_weights_ends_in_one_message_and_no_folder(tmp_path):
    """As a user runs it: no traceback, no retries, nothing left in --output-dir."""
    import subprocess
    import time

    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "finetune.py"), "--model", "resnet18"]
        + QUICK
        + ["--output-dir", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,  # the run must fail: its exit status is the assertion below
    )
    seconds = time.perf_counter() - start
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: timm's weights for 'resnet18'"), last
    for hint in ("pretrained=False", "checkpoint=", "HF_HUB_OFFLINE"):
        assert hint in last
    assert not out.exists()
    assert seconds < 120  # the Python and TensorFlow start-up; no download retries


def test_missing_checkpoint_file_is_named_and_leaves_no_folder(tmp_path):
    out = tmp_path / "run"
    argv = ["--model", "resnet18", "--checkpoint", str(tmp_path / "missing.safetensors")]
    with pytest.raises(FileNotFoundError, match="missing.safetensors' does not exist"):
        finetune.main(argv + QUICK + ["--output-dir", str(out)])
    assert not out.exists()


def test_finished_run_is_left_alone_unless_overwrite(checkpoint, tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["--model", "resnet18", "--checkpoint", checkpoint, "--output-dir", out]
    argv += QUICK + ["--frozen-epochs", "1", "--epochs", "1", "--precision", "float32"]
    first = finetune.main(argv)
    capsys.readouterr()
    again = finetune.main(argv)
    assert again["already_finished"] and again["test_accuracy"] == first["test_accuracy"]
    assert "is a finished run" in capsys.readouterr().out
    recorder = EpochCounter()
    summary = finetune.main(argv + ["--overwrite"], callbacks=[recorder])
    assert "already_finished" not in summary
    assert recorder.epochs == 1  # phase 1 trained again


def test_validates_on_held_out_training_digits(checkpoint, tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["--model", "resnet18", "--checkpoint", checkpoint, "--output-dir", out]
    argv += QUICK + ["--frozen-epochs", "1", "--epochs", "1", "--precision", "float32"]
    finetune.main(argv)
    assert "43 train / 5 validation / 48 test" in capsys.readouterr().out


class EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
