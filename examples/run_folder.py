"""Run folders of the examples: files that survive a kill, checkpoints, resume, finish.

Every example trains each model in a folder of its own that holds

    backup/       checkpoints while training (epoch-0003.weights.h5: 3 epochs done),
                  deleted once the run has finished: a finished run has none
    logs/         TensorBoard event files
    model.keras   the trained model
    summary.json  what the run measured, written after model.keras

Nothing is lost to a kill at any moment:

- every file is written under a temporary name in its folder and renamed over the
  final name (`os.replace` is atomic), so a reader finds the previous complete
  file or the new complete one, never a torn one;
- the two newest checkpoints are kept; one that cannot be read is set aside with
  a line saying so, and the one before it is used: a rerun never crash-loops;
- `backup/` is deleted only after `model.keras` and `summary.json` are written.

A rerun resumes where the checkpoints stop ("Resumed at epoch N"); a rerun of a
finished run says so and does nothing unless told to start over (`overwrite`).
"""

import contextlib
import glob
import json
import os
import re
import shutil
import time

import tf_onednn

os.environ.update(tf_onednn.environment())  # before Keras imports TensorFlow

import keras

PARTIAL = ".partial-"  # prefix of the temporary files of unfinished writes
CHECKPOINT = re.compile(r"epoch-(\d+)\.weights\.h5$")
KEEP_CHECKPOINTS = 2
# Recompute BatchNorm statistics when the moving averages still hold more than
# this share of their initial values (mean 0, variance 1).
STALE_STATISTICS = 0.01


## Atomic files


def _before_replace(partial, path):
    """Called once `partial` is complete, just before it replaces `path`.

    Does nothing: it is the seam where the kill tests stop a run mid-write.
    """


def _fsync(path):
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # directories cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; on success it replaces `path` in one step.

    The temporary file sits in `path`'s folder (a rename never crosses file
    systems) and ends like `path`, so writers that check extensions accept it.
    On an exception it is removed and `path` is untouched.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f"{PARTIAL}{os.getpid()}-{os.path.basename(path)}")
    try:
        yield partial
        _fsync(partial)  # the data on disk before the name points at it
        _before_replace(partial, path)
        os.replace(partial, path)
        _fsync(folder)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def remove_partials(folder):
    """Deletes the temporary files that killed writers left in `folder`."""
    for path in glob.glob(os.path.join(glob.escape(folder), PARTIAL + "*")):
        os.remove(path)


def write_text(path, text):
    with atomic_path(path) as partial, open(partial, "w") as f:
        f.write(text)


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")


def save_model(model, path):
    with atomic_path(path) as partial:
        model.save(partial)


def save_figure(figure, path, **kwargs):
    with atomic_path(path) as partial:
        figure.savefig(partial, format=os.path.splitext(path)[1][1:], **kwargs)


def load_model(path):
    """`keras.saving.load_model` (safe mode) that names the missing import.

    Keras says only that a class "could not be deserialized" when the file's
    keras_attention layers are not registered, i.e. `keras_attention` was not
    imported (or is a version without some layer of the file).
    """
    try:
        return keras.saving.load_model(path)
    except (TypeError, ValueError) as error:
        if "keras_attention" not in str(error):
            raise
        raise type(error)(
            f"{path} holds keras_attention layers that are not registered: `import "
            "keras_attention` before loading it, with a version that has every layer "
            f"the file names. Keras said: {error}"
        ) from error


## Checkpoints


class Checkpoints(keras.callbacks.Callback):
    """Weights and optimizer state at each epoch end, the two newest kept.

    Use `restore(model)` before `fit` (it returns the epoch to start at) and
    pass the object to `fit` as a callback.
    """

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def files(self):
        """[(epochs done, path)], newest first."""
        found = []
        for name in os.listdir(self.folder) if os.path.isdir(self.folder) else ():
            match = CHECKPOINT.fullmatch(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.folder, name)))
        return sorted(found, reverse=True)

    def exists(self):
        return bool(self.files())

    def restore(self, model):
        """Loads the newest readable checkpoint into `model`; returns its epoch (0: none)."""
        if not os.path.isdir(self.folder):
            return 0
        remove_partials(self.folder)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # its state is in the file
        for epoch, path in self.files():
            try:
                model.load_weights(path)
            except Exception as error:  # noqa: BLE001 (h5py, Keras: any failure means unusable)
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                os.replace(path, path + ".unreadable")
                print(
                    f"Checkpoint {path} cannot be read ({reason}); set aside as "
                    f"{os.path.basename(path)}.unreadable, trying the one before it."
                )
                continue
            print(f"Resumed at epoch {epoch} from {path}.")
            return epoch
        return 0

    def on_epoch_end(self, epoch, logs=None):
        with atomic_path(os.path.join(self.folder, f"epoch-{epoch + 1:04d}.weights.h5")) as path:
            self.model.save_weights(path)
        for _, old in self.files()[KEEP_CHECKPOINTS:]:
            os.remove(old)

    def remove(self):
        shutil.rmtree(self.folder, ignore_errors=True)


## BatchNorm statistics


def batch_norm_layers(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def stale_share(model, steps):
    """The largest share of the initial statistics left in a BatchNorm after `steps` steps."""
    return max((layer.momentum**steps for layer in batch_norm_layers(model)), default=0.0)


def recalibrate_batch_norm(model, dataset, max_batches=100):
    """Recomputes every BatchNorm's moving statistics on training batches (PreciseBN).

    After a short run the moving averages still hold much of their initial
    values and evaluation is near chance although training went well. Here
    batch k gets momentum (k - 1) / k, so after n batches the statistics are
    the plain average of n batches' statistics under the final weights.

    Returns the number of batches used.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    count = 0
    try:
        for images, _ in dataset.take(max_batches).as_numpy_iterator():
            count += 1
            for layer in layers:
                layer.momentum = (count - 1) / count
            model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return count


## A run


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of each epoch (validation included)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def tensorboard_callbacks(log_dir):
    """A TensorBoard callback, or none (with a note) where TensorBoard is missing."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        print("No TensorBoard logs: `pip install tensorboard` to get them.")
        return []
    return [keras.callbacks.TensorBoard(log_dir)]


def finished_summary(folder):
    """The summary of a finished run in `folder`, else None."""
    summary_path = os.path.join(folder, "summary.json")
    if Checkpoints(os.path.join(folder, "backup")).exists():
        return None  # killed after the save, before the cleanup: finish it
    if not (os.path.exists(summary_path) and os.path.exists(os.path.join(folder, "model.keras"))):
        return None
    with open(summary_path) as f:
        return json.load(f)


def train(
    model,
    folder,
    train_data,
    epochs,
    evaluate,
    validation_data=None,
    overwrite=False,
    verbose=2,
    callbacks=(),
    scope=None,
    describe=None,
    min_steps=0,
    short_run=None,
):
    """Trains `model` in run folder `folder`, resuming or finishing what is there.

    Args:
        model: a compiled Keras model.
        folder: the run folder (created).
        train_data: the training `tf.data.Dataset` (also used to recompute the
            BatchNorm statistics).
        epochs: int, the epochs of the whole run.
        evaluate: function `(reloaded model) -> dict` of JSON numbers, run on
            the model loaded back from `model.keras`.
        validation_data: passed to `fit`.
        overwrite: start afresh, discarding checkpoints and logs (the old
            `model.keras` and `summary.json` stay until the new ones replace them).
        verbose: `fit` verbosity.
        callbacks: appended to the run's own callbacks.
        scope: a function returning a context (a distribution strategy's
            `scope`) for restoring and recomputing statistics.
        describe: dict of JSON values put in the summary (model name, data, ...).
        min_steps: int; a run of fewer training steps prints a note saying that
            it is short and what that does (`short_run`), before it trains.
        short_run: str, what a run shorter than `min_steps` gets wrong.

    Returns:
        The summary (also in `summary.json`). A finished run is not trained
        again without `overwrite`: its summary is returned with
        `"already_finished": True`.
    """
    scope = scope or contextlib.nullcontext
    os.makedirs(folder, exist_ok=True)
    remove_partials(folder)
    checkpoints = Checkpoints(os.path.join(folder, "backup"))
    log_dir = os.path.join(folder, "logs")
    if overwrite:
        checkpoints.remove()
    else:
        done = finished_summary(folder)
        if done is not None:
            print(
                f"{folder} is a finished run ({done.get('epochs', '?')} epochs; "
                f"{summary_line(done)}): nothing to do. Pass --overwrite to train it "
                "again, or give another --output-dir."
            )
            return {**done, "already_finished": True}
    with scope():
        start = checkpoints.restore(model)
    if start == 0:
        shutil.rmtree(log_dir, ignore_errors=True)  # one run, one set of curves
    steps = int(train_data.cardinality())
    # An unknown length (negative) counts as one step: a short run, checked as one.
    total = epochs * max(steps, 1)
    if total < min_steps:
        print(
            f"Note: {total} training steps are too few for this model (it needs about "
            f"{min_steps:,}): {short_run}"
        )
    stale = stale_share(model, total)
    if stale > STALE_STATISTICS and validation_data is not None:
        print(
            f"Note: {epochs * steps} training steps are too few for BatchNorm's moving "
            f"statistics ({stale:.0%} of their initial values remain): the validation "
            "figures during training understate the model. The final figures use "
            "statistics recomputed on training batches."
        )
    timer = EpochTimer()
    start_time = time.perf_counter()
    history = model.fit(
        train_data,
        epochs=epochs,
        initial_epoch=start,
        validation_data=validation_data,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles; Keras warns otherwise
        callbacks=[checkpoints, *tensorboard_callbacks(log_dir), timer, *callbacks],
    )
    seconds = time.perf_counter() - start_time
    batches = 0
    if stale > STALE_STATISTICS:
        with scope():
            batches = recalibrate_batch_norm(model, train_data)
        print(f"BatchNorm statistics recomputed on {batches} training batches.")
    model_path = os.path.join(folder, "model.keras")
    save_model(model, model_path)
    # The figures reported are the reloaded file's: they prove the save is complete.
    metrics = evaluate(load_model(model_path))
    summary = {
        **(describe or {}),
        **metrics,
        "parameters": int(model.count_params()),
        "epochs": epochs,
        "epochs_run": len(history.epoch),
        "first_epoch": start + 1 if history.epoch else None,
        "resumed_at_epoch": start,
        "batch_norm_batches": batches,
        "train_seconds": seconds,
        "epoch_seconds": timer.seconds,
        "model_path": model_path,
    }
    write_json(os.path.join(folder, "summary.json"), summary)
    checkpoints.remove()  # only now: until here a kill resumes from it
    return summary


def summary_line(summary):
    """The metrics of a summary as "name value, ..." (floats in [0, 1] to 4 places)."""
    keys = [k for k in summary if k.startswith("test_") or k == "miou"]
    return ", ".join(f"{k} {summary[k]:.4f}" for k in keys) or "no metrics"
