"""
Title: Semantic segmentation with DANet and CCNet heads
Author: keras_attention contributors
Description: Per-pixel classification with dual attention (position + channel) and
recurrent criss-cross attention, scored by mean intersection over union.

## Introduction

Both models put an attention head on a small dilated backbone (output stride
8) and return per-pixel logits at the input resolution. Offline, the data are
scenes of 1-3 digits on a 64x64 canvas, where each inked pixel is labelled with
its digit (11 classes with the background); online, `--dataset oxford_iiit_pet`
segments pets, background and borders (3 classes) through TensorFlow Datasets.

    python examples/segmentation.py
    python examples/segmentation.py --dataset oxford_iiit_pet --image-size 128

It prints the test mIoU of each model and writes `segmentation.png` (inputs,
true masks and each model's predictions).
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

MODELS = {"danet": models.DANet, "ccnet": models.CCNet}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("## Introduction")[0].strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--models",
        default="danet,ccnet",
        help="Comma-separated models to train: danet (dual attention head), "
        "ccnet (criss-cross attention head, recurrence 2).",
    )
    parser.add_argument(
        "--dataset",
        default=data.DIGITS,
        choices=(data.DIGITS, "oxford_iiit_pet"),
        help="digits: offline scenes of MNIST digits; oxford_iiit_pet: TFDS (downloads once).",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="Square image size (default 64 for digits, 128 for pets).",
    )
    parser.add_argument("--epochs", type=int, default=10, help="Training epochs of each model.")
    parser.add_argument("--batch-size", type=int, default=16, help="Batch size.")
    parser.add_argument(
        "--learning-rate", type=float, default=3e-3, help="Peak Adam learning rate (cosine decay)."
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=precision.PRECISIONS,
        help="Global dtype policy (auto: see train_classifier.py). The logits are float32.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of weights and shuffling.")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="Training scenes of the digits (default 2,000; a quarter as many to test).",
    )
    parser.add_argument(
        "--output-dir",
        default=os.path.join("runs", "segmentation"),
        help="Where segmentation.png and the .keras models go.",
    )
    parser.add_argument(
        "--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras fit verbosity."
    )
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    if not args.models or any(name not in MODELS for name in args.models):
        parser.error(f"--models takes names from {', '.join(MODELS)}; received {args.models}")
    return args


## Scoring


def confusion(model, dataset, classes):
    """The (true, predicted) pixel count matrix over a dataset."""
    counts = np.zeros((classes, classes), "int64")
    for images, masks in dataset.as_numpy_iterator():  # NumPy for every backend
        predicted = np.argmax(np.asarray(model.predict_on_batch(images), "float32"), axis=-1)
        pairs = np.asarray(masks).ravel() * classes + predicted.ravel()
        counts += np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)
    return counts


def mean_iou(counts):
    """Mean over the classes present (in truth or prediction) of TP / (TP + FP + FN)."""
    true_positive = np.diag(counts)
    union = counts.sum(0) + counts.sum(1) - true_positive
    present = union > 0
    return float(np.mean(true_positive[present] / union[present]))


## Pictures


def plot(images, masks, predictions, classes, path):
    """Saves rows of input, true mask and each model's predicted mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("input", images), ("truth", masks)] + list(predictions.items())
    fig, axes = plt.subplots(len(rows), len(images), figsize=(1.6 * len(images), 1.7 * len(rows)))
    for r, (title, batch) in enumerate(rows):
        for c, item in enumerate(batch):
            ax = axes[r, c]
            if title == "input":
                ax.imshow(item.squeeze(), cmap="gray" if item.shape[-1] == 1 else None)
            else:
                ax.imshow(
                    item, cmap="tab20", vmin=0, vmax=max(classes - 1, 1), interpolation="nearest"
                )
            ax.set_axis_off()
            if c == 0:
                ax.set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    """Trains each model; returns {model: {"miou", "parameters"}}."""
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    policy = precision.set_precision(args.precision)
    dataset = data.segmentation_data(
        args.dataset, args.batch_size, args.image_size, seed=args.seed, limit=args.limit
    )
    print(
        f"{args.dataset}: {dataset.train_size} train / {dataset.test_size} test images "
        f"{dataset.input_shape}, {dataset.num_classes} classes, {policy}"
    )
    steps = int(dataset.train.cardinality())
    images, masks = (np.asarray(t) for t in next(iter(dataset.test)))
    images, masks = images[:6], masks[:6]
    results, predictions = {}, {}
    for name in args.models:
        keras.utils.set_random_seed(args.seed)
        model = MODELS[name](classes=dataset.num_classes, input_shape=dataset.input_shape)
        print(f"\n## {model.name}: {model.count_params():,} parameters")
        train_classifier.compile_model(model, args.learning_rate, args.epochs * max(steps, 1))
        # shuffle=False: the tf.data pipeline shuffles.
        model.fit(dataset.train, epochs=args.epochs, verbose=args.verbose, shuffle=False)
        model.save(os.path.join(args.output_dir, f"{name}.keras"))
        miou = mean_iou(confusion(model, dataset.test, dataset.num_classes))
        results[name] = {"miou": miou, "parameters": model.count_params()}
        predictions[name] = np.argmax(np.asarray(model.predict_on_batch(images), "float32"), -1)
        print(f"{model.name}: test mIoU {miou:.4f}")
    plot_path = os.path.join(args.output_dir, "segmentation.png")
    plot(images, masks, predictions, dataset.num_classes, plot_path)
    for name, result in results.items():
        print(f"{name}: test mIoU {result['miou']:.4f}, {result['parameters']:,} parameters")
    print(f"Predictions: {plot_path}")
    return results


if __name__ == "__main__":
    main()
