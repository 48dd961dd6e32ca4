"""
Title: Spatial transformer networks on distorted digits
Author: keras_attention contributors
Description: A classifier that learns to undo rotation, scale and translation,
against the same CNN without the transformer.

## Introduction

A spatial transformer (Jaderberg et al., NeurIPS 2015) predicts an affine warp
of its input from the input itself and resamples it, so the classifier behind
it sees the digit upright, centred and at one size. This example rebuilds the
paper's "RTS" test on the offline digits: each digit is rotated by up to 45
degrees, scaled by 0.7-1.2 and placed at random on a 42x42 canvas with 6x6
fragments of other digits as clutter. It trains `SpatialTransformerClassifier`
and the same CNN without the transformer on identical data, prints both test
accuracies and writes `stn_warps.png`: test inputs beside what the transformer
made of them, with their true and predicted labels.

    python examples/spatial_transformer.py

Each model trains in a run folder of its own (`<output-dir>/stn_classifier/`,
`<output-dir>/plain_cnn/`) as in `train_classifier.py`: checkpoints that
resume, TensorBoard logs, `model.keras` reloaded before it is scored, and
`--overwrite` to train a finished run again.
"""

## Setup

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tf_onednn

os.environ.update(tf_onednn.environment())  # before Keras imports TensorFlow

import keras
import numpy as np

from keras_attention import data
from keras_attention import models
from keras_attention import precision

import cli
import run_folder
import train_classifier


def parse_args(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument("--epochs", type=int, default=40, help="Training epochs of each model.")
    parser.add_argument("--batch-size", type=int, default=64, help="Batch size.")
    parser.add_argument(
        "--learning-rate", type=float, default=3e-3, help="Peak Adam learning rate (cosine decay)."
    )
    parser.add_argument(
        "--canvas", type=int, default=42, help="Height and width of the distorted images."
    )
    parser.add_argument("--clutter", type=int, default=4, help="Clutter fragments per image.")
    cli.add_precision_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="Seed of weights and shuffling.")
    parser.add_argument(
        "--limit", type=int, default=None, help="Use only this many train and test digits."
    )
    cli.add_run_folder_arguments(
        parser,
        os.path.join("runs", "spatial_transformer"),
        "Where stn_warps.png and the run folders stn_classifier/ and plain_cnn/ go.",
    )
    return parser.parse_args(argv)


## Distorted digits


def distorted_data(args):
    """The offline digits, each distorted once (fixed draws for train and test)."""
    (x_train, y_train), (x_test, y_test) = data.load_digits()
    if args.limit:
        x_train, y_train, x_test, y_test = (
            a[: args.limit] for a in (x_train, y_train, x_test, y_test)
        )
    distort = {"canvas": args.canvas, "clutter": args.clutter}
    train = (data.distort_digits(x_train, seed=1, **distort), y_train)
    test = (data.distort_digits(x_test, seed=2, **distort), y_test)
    # No augmentation: the distortion is the point, and the test set has its own.
    return data.from_arrays(
        train,
        test,
        args.batch_size,
        augment="none",
        seed=args.seed,
        validation_split=train_classifier.VALIDATION_SPLIT,
    )


## Training


def accuracy(dataset):
    def scores(model):
        train_classifier.evaluate(dataset)(model)  # compiles the reloaded model
        return {"test_accuracy": float(model.evaluate(dataset.test, verbose=0)[1])}

    return scores


def train(model, dataset, args):
    """Trains `model` in its run folder; returns its summary."""
    steps = int(dataset.train.cardinality())
    train_classifier.compile_model(model, args.learning_rate, args.epochs * steps)
    return run_folder.train(
        model,
        os.path.join(args.output_dir, model.name),
        dataset.train,
        args.epochs,
        accuracy(dataset),
        validation_data=dataset.validation,
        overwrite=args.overwrite,
        verbose=args.verbose,
        describe={"model": model.name},
    )


## What the transformer does


def plot_warps(model, images, labels, path):
    """Saves the inputs (top row) above the transformer's outputs (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    transformer = model.get_layer("spatial_transformer")
    warped = keras.Model(model.inputs, transformer.output).predict(images, verbose=0)
    predicted = np.argmax(np.asarray(model.predict(images, verbose=0), "float32"), axis=-1)
    fig, axes = plt.subplots(2, len(images), figsize=(1.6 * len(images), 3.8))
    for column, (before, after) in enumerate(zip(images, np.asarray(warped, "float32"))):
        for row, image in enumerate((before, after)):
            axes[row, column].imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            axes[row, column].set_axis_off()
        axes[0, column].set_title(
            f"true {labels[column]}, pred {predicted[column]}",
            fontsize=8,
            color="black" if labels[column] == predicted[column] else "red",
        )
    axes[0, 0].text(-0.1, 0.5, "input", rotation=90, va="center", ha="right",
                    transform=axes[0, 0].transAxes, fontsize=8)  # fmt: skip
    axes[1, 0].text(-0.1, 0.5, "transformed", rotation=90, va="center", ha="right",
                    transform=axes[1, 0].transAxes, fontsize=8)  # fmt: skip
    fig.tight_layout()
    run_folder.save_figure(fig, path, dpi=100)
    plt.close(fig)


def main(argv=None):
    """Trains both models; returns their test accuracies and parameter counts."""
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    policy = precision.set_precision(args.precision)
    dataset = distorted_data(args)
    print(
        f"{dataset.train_size} train / {dataset.validation_size} validation / "
        f"{dataset.test_size} test distorted digits, {policy}"
    )

    results = {}
    for transformer in (True, False):
        keras.utils.set_random_seed(args.seed)
        model = models.SpatialTransformerClassifier(
            input_shape=dataset.input_shape, classes=10, transformer=transformer
        )
        print(f"\n## {model.name}: {model.count_params():,} parameters")
        summary = train(model, dataset, args)
        results[model.name] = {
            "test_accuracy": summary["test_accuracy"],
            "parameters": summary["parameters"],
            "model_path": summary["model_path"],
        }

    stn = run_folder.load_model(results["stn_classifier"]["model_path"])
    images, labels = next(iter(dataset.test))
    plot_path = os.path.join(args.output_dir, "stn_warps.png")
    plot_warps(stn, np.asarray(images[:8]), np.asarray(labels[:8]), plot_path)
    for name, result in results.items():
        print(
            f"{name}: test accuracy {result['test_accuracy']:.4f}, {result['parameters']:,} parameters"
        )
    print(f"Inputs and their transformed versions: {plot_path}")
    return results


if __name__ == "__main__":
    main()
