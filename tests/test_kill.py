"""A real training run SIGKILLed at several moments, then rerun: nothing is lost.

Each run is `train_classifier.main` in a subprocess that kills itself with SIGKILL
at an exact point (a callback mid-epoch, or `run_folder._before_replace` while a
checkpoint or the model is written): no sleeps, no timing guesses. The model is a
tiny AttentionCNN without XLA so that four processes take well under a minute.
"""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_attention import models

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)

import run_folder

DRIVER = """
import os, signal, sys
sys.path.insert(0, {examples!r})
import keras
import run_folder
import train_classifier
from keras_attention import models

point = sys.argv[1]


def die(*_):
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def tiny_model(name, attention, input_shape, classes):
    return models.AttentionCNN("se", input_shape=input_shape, classes=classes, widths=(4, 8))


compile_model = train_classifier.compile_model


def compile_without_xla(model, learning_rate, steps):
    compile_model(model, learning_rate, steps)
    model.jit_compile = False  # XLA would compile for longer than the run trains


class KillMidEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 0:
            die()


def kill_while_writing(name):
    def before_replace(partial, path):
        assert os.path.getsize(partial) > 0  # the new file is complete, the old one in place
        if os.path.basename(path) == name:
            die()

    return before_replace


train_classifier.build_model = tiny_model
train_classifier.compile_model = compile_without_xla
callbacks = []
if point == "mid_epoch":
    callbacks.append(KillMidEpoch())
elif point != "none":
    run_folder._before_replace = kill_while_writing(point)
train_classifier.main(sys.argv[2:], callbacks=callbacks)
print("FINISHED")
"""


def run(point, argv):
    env = dict(os.environ, PYTHONUNBUFFERED="1", KERAS_BACKEND="tensorflow")
    return subprocess.run(
        [sys.executable, "-c", DRIVER.format(examples=EXAMPLES), point, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,  # the return code is the point of the test
    )


def killed(result):
    assert result.returncode == -signal.SIGKILL, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def weights_of(path):
    return [np.asarray(w) for w in keras.saving.load_model(path).get_weights()]


def assert_same_weights(path, expected):
    actual = weights_of(path)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


def checkpoint_names(folder):
    return sorted(n for n in os.listdir(folder / "backup") if not n.startswith("."))


def test_killed_at_any_moment_loses_nothing(tmp_path):
    # An earlier complete run: its model and summary must survive every kill below.
    earlier = models.AttentionCNN("se", input_shape=(28, 28, 1), classes=10, widths=(4, 8))
    earlier.save(tmp_path / "model.keras")
    earlier_weights = weights_of(tmp_path / "model.keras")
    earlier_summary = '{"test_accuracy": 0.5, "epochs": 1}\n'
    (tmp_path / "summary.json").write_text(earlier_summary)

    argv = ["--limit", "32", "--batch-size", "16", "--epochs", "3", "--precision", "float32"]
    argv += ["--verbose", "0", "--output-dir", str(tmp_path)]

    def assert_earlier_run_intact():
        assert_same_weights(tmp_path / "model.keras", earlier_weights)
        assert (tmp_path / "summary.json").read_text() == earlier_summary

    # 1. Started over with --overwrite, killed in the middle of epoch 2.
    killed(run("mid_epoch", argv + ["--overwrite"]))
    assert checkpoint_names(tmp_path) == ["epoch-0001.weights.h5"]
    assert_earlier_run_intact()

    # 2. Rerun: resumes, killed while the epoch-2 checkpoint is written.
    out = killed(run("epoch-0002.weights.h5", argv))
    assert "Resumed at epoch 1 " in out
    assert checkpoint_names(tmp_path) == ["epoch-0001.weights.h5"]
    assert_earlier_run_intact()

    # 3. Rerun: resumes at epoch 1 again, trains to the end, killed while model.keras is written.
    out = killed(run("model.keras", argv))
    assert "Resumed at epoch 1 " in out
    assert checkpoint_names(tmp_path) == ["epoch-0002.weights.h5", "epoch-0003.weights.h5"]
    assert_earlier_run_intact()

    # 4. The newest checkpoint torn (as a non-atomic writer leaves it): the one before is used.
    with open(tmp_path / "backup" / "epoch-0003.weights.h5", "r+b") as f:
        f.truncate(1000)
    result = run("none", argv)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "epoch-0003.weights.h5 cannot be read" in result.stdout
    assert "Resumed at epoch 2 " in result.stdout and "FINISHED" in result.stdout
    assert not (tmp_path / "backup").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(run_folder.PARTIAL)]
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert model.count_params() == earlier.count_params()
    summary = run_folder.finished_summary(str(tmp_path))
    assert summary["resumed_at_epoch"] == 2 and summary["epochs_run"] == 1


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "summary.json"
    run_folder.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), run_folder.atomic_path(str(path)) as partial:
        with open(partial, "w") as f:
            f.write('{"a": ')  # half written when the writer fails
        raise RuntimeError
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert os.listdir(tmp_path) == ["summary.json"]  # no temporary file left


def test_unreadable_checkpoints_are_set_aside_never_a_crash(tmp_path, capsys):
    model = models.AttentionCNN(None, widths=(4,))
    model.compile("adam", "mse")
    checkpoints = run_folder.Checkpoints(str(tmp_path))
    checkpoints.set_model(model)
    checkpoints.on_epoch_end(0)
    (tmp_path / "epoch-0002.weights.h5").write_bytes(b"")  # torn: 0 bytes
    assert checkpoints.restore(model) == 1
    out = capsys.readouterr().out
    assert "epoch-0002.weights.h5 cannot be read" in out and "Resumed at epoch 1 " in out
    assert (tmp_path / "epoch-0002.weights.h5.unreadable").exists()
    (tmp_path / "epoch-0001.weights.h5").write_bytes(b"junk")
    assert checkpoints.restore(model) == 0  # nothing readable: from the start, no crash


def test_only_the_two_newest_checkpoints_are_kept(tmp_path):
    model = models.AttentionCNN(None, widths=(4,))
    model.compile("adam", "mse")
    checkpoints = run_folder.Checkpoints(str(tmp_path))
    checkpoints.set_model(model)
    for epoch in range(4):
        checkpoints.on_epoch_end(epoch)
    assert [epoch for epoch, _ in checkpoints.files()] == [4, 3]
