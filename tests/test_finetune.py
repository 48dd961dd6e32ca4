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
