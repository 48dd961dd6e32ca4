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
true masks and each model's predictions, with a legend of the classes).

Each model trains in a run folder of its own (`<output-dir>/danet/`,
`<output-dir>/ccnet/`) as in `train_classifier.py`: checkpoints that resume,
TensorBoard logs, `model.keras` reloaded before it is scored, and `--overwrite`
to train a finished run again.
"""

## Setup

import os
import sys

import keras
import numpy as np

from keras_attention import data
from keras_attention import models
from keras_attention import precision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli
import run_folder
import train_classifier

MODELS = {"danet": models.DANet, "ccnet": models.CCNet}
# Below this many training steps the heads have not left the majority class: they
# predict background everywhere (pixel accuracy ~0.95 on the digits, mIoU ~0.09).
MIN_STEPS = 1000
SHORT_RUN = (
    "short runs predict the background everywhere (on the digits: pixel accuracy ~0.95, "
    "mIoU ~0.09). Train longer (--epochs, --limit) for a meaningful mIoU."
)
CLASS_NAMES = {
    data.DIGITS: ["background"] + [f"digit {d}" for d in range(10)],
    "oxford_iiit_pet": ["pet", "background", "border"],
}


def parse_args(argv=None):
    parser = cli.parser(__doc__)
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
        help="Where segmentation.png and the run folders (one per model) go.",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="Train finished runs in --output-dir again."
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


def plot(images, masks, predictions, class_names, path):
    """Saves rows of input, true mask and each model's predicted mask, and a class legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    classes = len(class_names)
    colours = ListedColormap(plt.get_cmap("tab20").colors[:classes])
    rows = [("input", images), ("truth", masks)] + list(predictions.items())
    fig, axes = plt.subplots(
        len(rows), len(images), figsize=(1.6 * len(images) + 1.6, 1.7 * len(rows)), squeeze=False
    )
    for r, (title, batch) in enumerate(rows):
        for c, item in enumerate(batch):
            ax = axes[r, c]
            if title == "input":
                ax.imshow(item.squeeze(), cmap="gray" if item.shape[-1] == 1 else None)
            else:  # one colour per class, the same in every panel
                ax.imshow(
                    item, cmap=colours, vmin=-0.5, vmax=classes - 0.5, interpolation="nearest"
                )
            ax.set_axis_off()
            if c == 0:
                ax.set_title(title, fontsize=8, loc="left")
    legend = [Patch(color=colours(k), label=name) for k, name in enumerate(class_names)]
    fig.legend(handles=legend, loc="center right", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / fig.get_figwidth(), 1))
    run_folder.save_figure(fig, path, dpi=100)
    plt.close(fig)


def scores(dataset):
    def evaluate(model):
        counts = confusion(model, dataset.test, dataset.num_classes)
        return {
            "miou": mean_iou(counts),
            "test_pixel_accuracy": float(np.trace(counts) / max(counts.sum(), 1)),
            # Share of the test pixels predicted as each class: one class = nothing learned.
            "predicted_shares": (counts.sum(0) / max(counts.sum(), 1)).tolist(),
        }

    return evaluate


def one_class_warning(summary, class_names, share=0.99):
    """A warning when the model predicts one class for nearly every test pixel, else None."""
    shares = summary.get("predicted_shares") or []
    if not shares or max(shares) < share:
        return None
    top = int(np.argmax(shares))
    return (
        f"Warning: {summary['model']} predicts {class_names[top]!r} for {max(shares):.1%} of "
        f"the test pixels: it has learned nothing else yet (mIoU {summary['miou']:.4f}). "
        f"Train longer (--epochs, --limit); {summary['epochs']} epochs were run."
    )


def main(argv=None):
    """Trains each model; returns {model: {"miou", "parameters"}}."""
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    policy = precision.set_precision(args.precision)
    dataset = data.segmentation_data(
        args.dataset,
        args.batch_size,
        args.image_size,
        seed=args.seed,
        limit=args.limit,
        validation_split=train_classifier.VALIDATION_SPLIT,
    )
    print(
        f"{args.dataset}: {dataset.train_size} train / {dataset.validation_size} validation / "
        f"{dataset.test_size} test images "
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
        summary = run_folder.train(
            model,
            os.path.join(args.output_dir, name),
            dataset.train,
            args.epochs,
            scores(dataset),
            validation_data=dataset.validation,
            overwrite=args.overwrite,
            verbose=args.verbose,
            describe={"model": model.name, "dataset": args.dataset, "precision": policy},
            min_steps=MIN_STEPS,
            short_run=SHORT_RUN,
        )
        warning = one_class_warning(summary, CLASS_NAMES[args.dataset])
        if warning:
            print(warning, file=sys.stderr)
        results[name] = {"miou": summary["miou"], "parameters": summary["parameters"]}
        reloaded = run_folder.load_model(summary["model_path"])
        predictions[name] = np.argmax(np.asarray(reloaded.predict_on_batch(images), "float32"), -1)
        print(f"{model.name}: test mIoU {summary['miou']:.4f}")
    plot_path = os.path.join(args.output_dir, "segmentation.png")
    plot(images, masks, predictions, CLASS_NAMES[args.dataset], plot_path)
    for name, result in results.items():
        print(f"{name}: test mIoU {result['miou']:.4f}, {result['parameters']:,} parameters")
    print(f"Predictions: {plot_path}")
    return results


if __name__ == "__main__":
    try:
        main()
    except data.DataError as error:  # one line: the data cannot be had
        raise SystemExit(f"error: {error}") from None
