"""
Title: Semantic segmentation with DANet and CCNet heads
Author: keras_attention contributors
Description: Per-pixel classification with dual attention (position + channel) and
recurrent criss-cross attention, scored by mean intersection over union.

## Introduction

By default both models put an attention head on a small dilated backbone
(output stride 8) that trains in minutes on a CPU, and return per-pixel logits
at the input resolution. `--backbone NAME` builds the published networks
instead: `from_timm(NAME, features_only=True, output_stride=...)` (e.g.
`resnet101s`, the papers' dilated ResNet-101; `resnet18` for a quick run) and
the released heads, with timm's ImageNet weights where they can be had (see
`--pretrained`; offline, random weights and a note saying so). Offline, the
data are scenes of 1-3 digits on a 64x64 canvas, where each inked pixel is
labelled with its digit (11 classes with the background; made RGB for a timm
backbone); online, `--dataset oxford_iiit_pet` segments pets, background and
borders (3 classes) through TensorFlow Datasets.

    python examples/segmentation.py
    python examples/segmentation.py --dataset oxford_iiit_pet --image-size 128
    python examples/segmentation.py --dataset oxford_iiit_pet --backbone resnet101s \
        --image-size 256 --batch-size 8 --learning-rate 1e-3

It prints the test mIoU and the IoU of every class for each model, and writes
`segmentation.png` (inputs, true masks and each model's predictions, with a
legend of the classes) and `danet_position_attention.png`: for a few query
pixels of each test image (one on each of its largest classes), the weights
that DANet's position attention gives every pixel of the feature map.

Each model trains in a run folder of its own (`<output-dir>/danet/`,
`<output-dir>/ccnet/`; on a timm backbone e.g. `danet_resnet101s_os8/`, with
`_random` after it from random weights) as in `train_classifier.py`: checkpoints that resume,
TensorBoard logs, `model.keras` reloaded before it is scored, and `--overwrite`
to train a finished run again.
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
from keras_attention.layers import DualAttention
from keras_attention.layers import PositionAttention
from keras_attention.models.timm import checkpoint as checkpoint_io

import cli
import run_folder
import train_classifier
import visualize_attention

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
        "--backbone",
        default=None,
        choices=models.timm_names(),
        metavar="NAME",
        help="A from_timm name (ResNet family or RegNetY; resnet101s: the papers' dilated "
        "ResNet-101) for the published DANet/CCNet. Default: a small dilated stand-in "
        "backbone that trains in minutes on a CPU.",
    )
    parser.add_argument(
        "--output-stride",
        type=int,
        default=None,
        choices=(8, 16, 32),
        help="With --backbone: from_timm's output_stride (default 8, the papers').",
    )
    parser.add_argument(
        "--pretrained",
        default="auto",
        choices=("auto", "yes", "no"),
        help="With --backbone, timm's ImageNet weights: 'auto' (the default) loads them from "
        "--checkpoint, the hub's cache or the hub, else trains from random weights and says "
        "so (offline); 'yes' stops with an error without them; 'no': random weights.",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="With --backbone: a local .safetensors (or .pth with torch) file of timm's "
        "weights for it, instead of the hub.",
    )
    parser.add_argument(
        "--queries",
        type=int,
        default=3,
        help="Query pixels per image in danet_position_attention.png (one per class, "
        "largest classes first).",
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
    cli.add_precision_argument(parser, logits_float32=True)
    parser.add_argument("--seed", type=int, default=0, help="Seed of weights and shuffling.")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="Training scenes of the digits (default 2,000; a quarter as many to test).",
    )
    cli.add_run_folder_arguments(
        parser,
        os.path.join("runs", "segmentation"),
        "Where segmentation.png and the run folders (one per model) go.",
    )
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    if not args.models or any(name not in MODELS for name in args.models):
        parser.error(f"--models takes names from {', '.join(MODELS)}; received {args.models}")
    if args.backbone is None:
        for flag in ("output_stride", "checkpoint"):
            if getattr(args, flag) is not None:
                parser.error(f"--{flag.replace('_', '-')} applies to a --backbone only")
    elif args.output_stride is None:
        args.output_stride = 8
    if args.checkpoint and args.pretrained == "no":
        parser.error("--checkpoint loads pretrained weights: it contradicts --pretrained no")
    if args.queries < 1:
        parser.error(f"--queries must be at least 1; received {args.queries}")
    return args


## The models


def backbone_weights(args):
    """timm's state dict for `--backbone`, or None for random weights.

    Raises:
        WeightsUnavailableError: `--pretrained yes`, and the weights are neither
            cached nor downloadable.
        FileNotFoundError: `--checkpoint` names no file.
    """
    if args.backbone is None or args.pretrained == "no":
        return None
    if args.checkpoint:
        return checkpoint_io.load_checkpoint(args.checkpoint)
    try:
        return checkpoint_io.download(models.timm_config(args.backbone))
    except (checkpoint_io.WeightsUnavailableError, ImportError) as error:
        if args.pretrained == "yes":
            raise
        print(
            f"Note: the {args.backbone} backbone starts from random weights, not timm's "
            f"ImageNet ones (--pretrained auto): {error}",
            file=sys.stderr,
        )
        return None


def build_model(name, args, dataset, weights):
    """`MODELS[name]` on the small backbone, or on `--backbone` with `weights`."""
    timm = {}
    if args.backbone is not None:
        timm = {
            "backbone": args.backbone,
            "output_stride": args.output_stride,
            "pretrained": weights is not None,
            "checkpoint": weights,
        }
    return MODELS[name](classes=dataset.num_classes, input_shape=dataset.input_shape, **timm)


def run_name(name, args, weights):
    """The model's run folder: "danet", or e.g. "danet_resnet101s_os8" on a timm backbone
    ("..._random" from random weights: an offline run is not taken for a pretrained one)."""
    if args.backbone is None:
        return name
    random = "_random" if weights is None else ""
    return f"{name}_{args.backbone}_os{args.output_stride}{random}"


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


def class_iou(counts):
    """TP / (TP + FP + FN) of each class; None for a class in neither truth nor prediction."""
    true_positive = np.diag(counts)
    union = counts.sum(0) + counts.sum(1) - true_positive
    return [float(t / u) if u > 0 else None for t, u in zip(true_positive, union)]


def iou_line(summary, class_names):
    """ "name 0.1234, ..." of a summary's per-class IoU (absent classes: n/a)."""
    values = summary.get("class_iou") or []
    return ", ".join(
        f"{name} {'n/a' if value is None else f'{value:.4f}'}"
        for name, value in zip(class_names, values)
    )


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


def position_attention_layer(model):
    """(layer, map key) of DANet's position attention in `model`, or (None, None)."""
    for layer in model.layers:
        if isinstance(layer, PositionAttention):  # the published head's `head_sa`
            return layer, layer.name
        if isinstance(layer, DualAttention):  # the small-backbone DANet's head
            return layer, f"{layer.name}/position"
    return None, None


def query_pixels(mask, height, width, count):
    """Up to `count` (row, column, class) cells of a `height` x `width` feature grid.

    The mask is read at each cell's centre; one query per class, the largest
    classes first, at the cell of that class nearest the class's mean position.
    """
    rows = ((np.arange(height) + 0.5) * mask.shape[0] / height).astype(int)
    columns = ((np.arange(width) + 0.5) * mask.shape[1] / width).astype(int)
    grid = mask[rows][:, columns]
    classes, sizes = np.unique(grid, return_counts=True)
    queries = []
    for label in classes[np.argsort(-sizes, kind="stable")][:count]:
        cells = np.argwhere(grid == label)
        nearest = cells[np.argmin(((cells - cells.mean(axis=0)) ** 2).sum(axis=1))]
        queries.append((int(nearest[0]), int(nearest[1]), int(label)))
    return queries


def plot_position_attention(model, images, masks, class_names, count, path):
    """Draws, per image, the position attention of its query pixels over the feature map.

    Returns the number of panels drawn, or None when `model` has no position attention.
    """
    layer, key = position_attention_layer(model)
    if layer is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = visualize_attention.attention_model(model, [layer]).predict(images, verbose=0)
    weights = np.asarray(weights[key], "float32")  # (batch, H*W queries, H*W keys)
    height, width = visualize_attention.feature_size(model, layer, images)
    queries = [query_pixels(mask, height, width, count) for mask in masks]
    fig, axes = plt.subplots(
        len(images), count, figsize=(max(2.0 * count, 4.5), 2.1 * len(images)), squeeze=False
    )
    panels = 0
    for k, image in enumerate(images):
        for q, ax in enumerate(axes[k]):
            ax.set_axis_off()
            if q >= len(queries[k]):
                continue
            row, column, label = queries[k][q]
            keys = weights[k, row * width + column].reshape(1, height, width)
            ax.imshow(image if image.shape[-1] == 3 else image[..., 0], cmap="gray")
            shown = visualize_attention.upsample(keys, *image.shape[:2])[0]
            ax.imshow(shown, cmap="jet", alpha=0.45, vmin=0.0, vmax=float(keys.max()))
            y = (row + 0.5) * image.shape[0] / height - 0.5
            x = (column + 0.5) * image.shape[1] / width - 0.5
            ax.plot(x, y, marker="x", color="white", markersize=8, markeredgewidth=2)
            ax.set_title(f"query: {class_names[label]}", fontsize=7)
            panels += 1
    fig.suptitle(
        f"{model.name}: position attention ({layer.name}, {height}x{width} map)\nwhere each "
        "query pixel (x) looks; each panel scaled to its maximum",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    run_folder.save_figure(fig, path, dpi=100)
    plt.close(fig)
    return panels


def scores(dataset):
    def evaluate(model):
        counts = confusion(model, dataset.test, dataset.num_classes)
        return {
            "miou": mean_iou(counts),
            "class_iou": class_iou(counts),
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
    """Trains each model; returns {model: {"miou", "class_iou", "parameters"}}."""
    args = parse_args(argv)
    # The weights first, before the data: `--pretrained yes` without them stops at once.
    weights = backbone_weights(args)
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
    if args.backbone is not None:  # timm's networks take RGB in [0, 1]
        dataset = data.as_rgb(dataset)
    print(
        f"{args.dataset}: {dataset.train_size} train / {dataset.validation_size} validation / "
        f"{dataset.test_size} test images "
        f"{dataset.input_shape}, {dataset.num_classes} classes, {policy}"
    )
    if args.backbone is not None:
        source = "random" if weights is None else "timm's ImageNet"
        print(f"Backbone: {args.backbone}, output stride {args.output_stride}, {source} weights")
    steps = int(dataset.train.cardinality())
    images, masks = (np.asarray(t) for t in next(iter(dataset.test)))
    images, masks = images[:6], masks[:6]
    class_names = CLASS_NAMES[args.dataset]
    results, predictions, reloaded_models = {}, {}, {}
    for name in args.models:
        keras.utils.set_random_seed(args.seed)
        model = build_model(name, args, dataset, weights)
        print(f"\n## {model.name}: {model.count_params():,} parameters")
        train_classifier.compile_model(model, args.learning_rate, args.epochs * max(steps, 1))
        summary = run_folder.train(
            model,
            os.path.join(args.output_dir, run_name(name, args, weights)),
            dataset.train,
            args.epochs,
            scores(dataset),
            validation_data=dataset.validation,
            overwrite=args.overwrite,
            verbose=args.verbose,
            describe={
                "model": model.name,
                "backbone": args.backbone or "small",
                "output_stride": args.output_stride or 8,
                "pretrained": weights is not None,
                "dataset": args.dataset,
                "precision": policy,
            },
            min_steps=MIN_STEPS,
            short_run=SHORT_RUN,
        )
        warning = one_class_warning(summary, class_names)
        if warning:
            print(warning, file=sys.stderr)
        results[name] = {
            "miou": summary["miou"],
            "class_iou": summary.get("class_iou"),  # None in runs of earlier versions
            "parameters": summary["parameters"],
        }
        reloaded = reloaded_models[name] = run_folder.load_model(summary["model_path"])
        predictions[name] = np.argmax(np.asarray(reloaded.predict_on_batch(images), "float32"), -1)
        print(f"{model.name}: test mIoU {summary['miou']:.4f}")
    plot_path = os.path.join(args.output_dir, "segmentation.png")
    plot(images, masks, predictions, class_names, plot_path)
    attention_path = None
    if "danet" in reloaded_models:
        attention_path = os.path.join(args.output_dir, "danet_position_attention.png")
        shown = slice(0, 4)  # four images, `--queries` panels each
        plot_position_attention(
            reloaded_models["danet"],
            images[shown],
            masks[shown],
            class_names,
            args.queries,
            attention_path,
        )
    for name, result in results.items():
        print(f"{name}: test mIoU {result['miou']:.4f}, {result['parameters']:,} parameters")
        print(f"{name}: test IoU per class: {iou_line(result, class_names)}")
    print(f"Predictions: {plot_path}")
    if attention_path:
        print(f"DANet's position attention: {attention_path}")
    return results


if __name__ == "__main__":
    try:
        main()
    except (checkpoint_io.WeightsUnavailableError, FileNotFoundError, data.DataError) as error:
        # One paragraph, no traceback: the weights or the data cannot be had.
        raise SystemExit(f"error: {error}") from None
