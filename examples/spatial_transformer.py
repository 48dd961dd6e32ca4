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
made of them.

    python examples/spatial_transformer.py
"""

## Setup

import argparse
import os
import sys

import keras
import numpy as np

from keras_attention import data
from keras_attention import models
from keras_attention import precision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_classifier


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("## Introduction")[0].strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=40, help="Training epochs of each model.")
    parser.add_argument("--batch-size", type=int, default=64, help="Batch size.")
    parser.add_argument(
        "--learning-rate", type=float, default=3e-3, help="Peak Adam learning rate (cosine decay)."
    )
    parser.add_argument(
        "--canvas", type=int, default=42, help="Height and width of the distorted images."
    )
    parser.add_argument("--clutter", type=int, default=4, help="Clutter fragments per image.")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=precision.PRECISIONS,
        help="Global dtype policy (auto: see train_classifier.py).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of weights and shuffling.")
    parser.add_argument(
        "--limit", type=int, default=None, help="Use only this many train and test digits."
    )
    parser.add_argument(
        "--output-dir",
        default=os.path.join("runs", "spatial_transformer"),
        help="Where stn_warps.png and stn_classifier.keras go.",
    )
    parser.add_argument(
        "--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras fit verbosity."
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
    return data.from_arrays(train, test, args.batch_size, augment="none", seed=args.seed)


## Training


def train(model, dataset, args):
    keras.utils.set_random_seed(args.seed)
    steps = int(dataset.train.cardinality())
    train_classifier.compile_model(model, args.learning_rate, args.epochs * steps)
    # shuffle=False: the tf.data pipeline shuffles.
    model.fit(
        dataset.train,
        epochs=args.epochs,
        validation_data=dataset.test,
        verbose=args.verbose,
        shuffle=False,
    )
    return float(model.evaluate(dataset.test, verbose=0)[1])


## What the transformer does


def plot_warps(model, images, path):
    """Saves the inputs (top row) above the transformer's outputs (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    transformer = model.get_layer("spatial_transformer")
    warped = keras.Model(model.inputs, transformer.output).predict(images, verbose=0)
    fig, axes = plt.subplots(2, len(images), figsize=(1.6 * len(images), 3.6))
    for column, (before, after) in enumerate(zip(images, np.asarray(warped, "float32"))):
        for row, (image, title) in enumerate(((before, "input"), (after, "transformed"))):
            axes[row, column].imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            axes[row, column].set_axis_off()
            axes[row, column].set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    """Trains both models; returns their test accuracies and parameter counts."""
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    policy = precision.set_precision(args.precision)
    dataset = distorted_data(args)
    print(f"{dataset.train_size} train / {dataset.test_size} test distorted digits, {policy}")

    results = {}
    keras.utils.set_random_seed(args.seed)
    stn = models.SpatialTransformerClassifier(input_shape=dataset.input_shape, classes=10)
    keras.utils.set_random_seed(args.seed)
    plain = models.SpatialTransformerClassifier(
        input_shape=dataset.input_shape, classes=10, transformer=False
    )
    for model in (stn, plain):
        print(f"\n## {model.name}: {model.count_params():,} parameters")
        results[model.name] = {
            "test_accuracy": train(model, dataset, args),
            "parameters": model.count_params(),
        }

    stn.save(os.path.join(args.output_dir, "stn_classifier.keras"))
    images, _ = next(iter(dataset.test))
    plot_path = os.path.join(args.output_dir, "stn_warps.png")
    plot_warps(stn, np.asarray(images[:8]), plot_path)
    for name, result in results.items():
        print(
            f"{name}: test accuracy {result['test_accuracy']:.4f}, {result['parameters']:,} parameters"
        )
    print(f"Inputs and their transformed versions: {plot_path}")
    return results


if __name__ == "__main__":
    main()
