"""
Title: 3-D brain tissue segmentation with Attention U-Net
Author: keras_attention contributors
Description: Grey and white matter of a real brain MRI (the MNI152 template that nilearn
ships), learnt from random 3-D patches of one half of the head and scored by Dice on the other.

## Introduction

Oktay et al.'s Attention U-Net (MIDL 2018) is a 3-D U-Net whose skip connections
pass through grid attention gates: a coarser decoder signal decides which voxels
of the skip features reach the decoder. This example trains it and the plain
U-Net of the same widths (`models.AttentionUNet(dims=3)`, `models.UNet(dims=3)`)
on one real volume that needs no network: the ICBM 2009a T1 template of the MNI152
space and its grey- and white-matter probability maps, which nilearn's wheel
ships (`pip install nilearn`).

Labels: each voxel takes its most probable tissue among background (1 - GM - WM:
cerebrospinal fluid, skull, scalp and air), grey matter (GM) and white matter
(WM), i.e. the argmax of the three probabilities; at 2 mm that gives 80.4%
background, 12.4% GM and 7.2% WM voxels.

The head is cut in two halves. The networks train on random cubic patches whose
centre lies in the brain of the first half, and the reloaded model segments the
whole second half in one pass, scored by Dice per class. The default cut is
front/back (train on the front half, test on the back half with the occipital lobes
and the cerebellum): the template is symmetric (its right half is the mirror
image of its left half, to float rounding), so `--split left-right` tests on a
mirrored copy of the training half.

    python examples/segment_volumes.py                     # 2 CPU cores: a few minutes
    python examples/segment_volumes.py --model attention_unet --epochs 2
    # a GPU: 1 mm voxels, 64^3 patches, 4x the width, longer
    python examples/segment_volumes.py --resolution 1 --patch-size 64 --width 16 \\
        --epochs 40 --patches 256 --batch-size 4

It prints Dice per class for each model and writes `segment_volumes.png`: axial,
coronal and sagittal slices of the test half with the T1 image, the labels, each
model's prediction and the attention of Attention U-Net's finest gate
(`attention2_gate1`, read by a sub-model from the gate layer's second output).

Each model trains in a run folder of its own (`<output-dir>/attention_unet/`,
`<output-dir>/unet/`) as in `train_classifier.py`: checkpoints that resume,
TensorBoard logs, `model.keras` reloaded before it is scored, and `--overwrite`
to train a finished run again. There is no validation split: the single volume's
first half is all training data, and the second half is scored once, at the end.
"""

## Setup

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tf_onednn

os.environ.update(tf_onednn.environment())  # before Keras imports TensorFlow

import keras
import numpy as np
import tensorflow as tf

from keras_attention import data
from keras_attention import models
from keras_attention import precision

import cli
import distribute
import run_folder
import train_classifier

MODELS = {"attention_unet": models.AttentionUNet, "unet": models.UNet}
CLASS_NAMES = ("background", "grey matter", "white matter")
# Axis of the (x, y, z) = (left->right, back->front, bottom->top) voxel grid that
# each cut runs across, and whether the training half is the high-index one.
SPLITS = {
    "front-back": (1, True),  # train: front (anterior) half; test: back half
    "left-right": (0, False),  # train: left hemisphere; test: its mirror image
    "top-bottom": (2, True),  # train: top half; test: bottom half (cerebellum, brain stem)
}
LEVELS = 4  # the released network's poolings: patches are multiples of 2^4
GATE = "attention2_gate1"  # the finest gate (skip at half the input resolution)
# Below about this many steps the networks still predict the background almost everywhere.
MIN_STEPS = 100
SHORT_RUN = (
    "short runs label nearly every voxel background (Dice near 0 for grey and white "
    "matter). Train longer (--epochs, --patches) for meaningful figures."
)


def parse_args(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--model",
        default="both",
        choices=(*MODELS, "both"),
        help="attention_unet: Attention U-Net 3-D (two grid attention gates per skip, deep "
        "supervision, as Oktay et al.'s released CT network); unet: the plain U-Net of the "
        "same widths; both (the default): the two, same seed, data and budget.",
    )
    parser.add_argument(
        "--split",
        default="front-back",
        choices=tuple(SPLITS),
        help="How the head is cut in two: train on the first-named half, test on the other "
        "(left-right tests on the mirror image of the training half: the template is "
        "symmetric).",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=2,
        choices=(1, 2),
        help="Voxel size in mm: 2 (99x117x95 voxels) or 1 (197x233x189).",
    )
    parser.add_argument(
        "--patch-size",
        type=int,
        default=32,
        help=f"Edge of the cubic training patches, a multiple of {2**LEVELS}.",
    )
    parser.add_argument(
        "--patches", type=int, default=96, help="Random training patches per epoch."
    )
    parser.add_argument(
        "--width",
        type=int,
        default=4,
        help="Width of the first level; the five levels have width x (1, 2, 4, 8, 16). "
        "The released CT network has 16.",
    )
    parser.add_argument("--epochs", type=int, default=8, help="Training epochs of each model.")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=4,
        help="Global batch size of patches (split across replicas with --distribute).",
    )
    parser.add_argument(
        "--learning-rate", type=float, default=3e-3, help="Peak Adam learning rate (cosine decay)."
    )
    cli.add_precision_argument(parser, spatial_rank=3, logits_float32=True)
    distribute.add_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="Seed of weights and patches.")
    cli.add_run_folder_arguments(
        parser,
        os.path.join("runs", "segment_volumes"),
        "Where segment_volumes.png and the run folders (one per model) go.",
    )
    args = parser.parse_args(argv)
    if args.patch_size < 2**LEVELS or args.patch_size % 2**LEVELS:
        parser.error(
            f"--patch-size must be a positive multiple of {2**LEVELS}; received {args.patch_size}"
        )
    for flag in ("patches", "width", "epochs", "batch_size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    args.models = list(MODELS) if args.model == "both" else [args.model]
    return args


## The volume


def load_volume(resolution=2):
    """The MNI152 T1 template scaled to [0, 1] and its tissue labels, from nilearn's wheel.

    Returns `(image, labels)`: float32 and uint8 arrays of the (x, y, z) voxel grid
    (RAS: x left->right, y back->front, z bottom->top). Label 0 is background,
    1 grey matter, 2 white matter: the most probable of (1 - GM - WM, GM, WM),
    GM and WM being the template's probability maps.
    """
    try:
        from nilearn import datasets
    except ImportError:
        raise data.DataError(
            "this example reads the MNI152 template that nilearn ships: pip install nilearn"
        ) from None
    image = datasets.load_mni152_template(resolution=resolution).get_fdata(dtype="float32")
    grey = datasets.load_mni152_gm_template(resolution=resolution).get_fdata(dtype="float32")
    white = datasets.load_mni152_wm_template(resolution=resolution).get_fdata(dtype="float32")
    image = np.clip(image / max(float(image.max()), 1e-6), 0.0, 1.0)
    labels = np.argmax(np.stack([1.0 - grey - white, grey, white]), axis=0).astype("uint8")
    return image, labels


def halves(volume, split):
    """`(train, test)` halves of a volume cut across `SPLITS[split]`'s axis."""
    axis, train_high = SPLITS[split]
    middle = volume.shape[axis] // 2
    low = np.take(volume, np.arange(middle), axis=axis)
    high = np.take(volume, np.arange(middle, volume.shape[axis]), axis=axis)
    return (high, low) if train_high else (low, high)


def add_channels(volume):
    """A volume (D, H, W) as the models' input: a channel axis where the data format wants it."""
    return np.expand_dims(volume, -1 if keras.config.image_data_format() == "channels_last" else 0)


## Patches


def patch_corners(labels, patch_size):
    """Corners of every patch of `labels` that fits and whose centre voxel is brain (GM or WM)."""
    centre = patch_size // 2
    room = [n - patch_size + 1 for n in labels.shape]
    if min(room) < 1:
        raise ValueError(
            f"`patch_size` {patch_size} does not fit the training half {labels.shape}: "
            "use a smaller --patch-size or --resolution 1."
        )
    inner = labels[tuple(slice(centre, centre + r) for r in room)]
    return np.argwhere(inner > 0).astype("int32")


def patch_pipeline(image, labels, patch_size, patches, batch_size, seed):
    """Random `patch_size`^3 (patch, labels) pairs of one volume, new ones every epoch.

    tf.data: a seeded random stream (drawn afresh each epoch) picks corners among
    those whose patch is centred in the brain, crops them from the cached volume,
    then batches and prefetches.
    """
    corners = tf.constant(patch_corners(labels, patch_size))
    volume = tf.constant(add_channels(image))
    target = tf.constant(labels.astype("int32"))
    channels_first = keras.config.image_data_format() == "channels_first"

    def crop(random):
        corner = corners[tf.math.floormod(random, tf.cast(tf.shape(corners)[0], "int64"))]
        cube = tf.fill([3], patch_size)
        if channels_first:
            begin, size = tf.concat([[0], corner], 0), tf.concat([[-1], cube], 0)
        else:
            begin, size = tf.concat([corner, [0]], 0), tf.concat([cube, [-1]], 0)
        return tf.slice(volume, begin, size), tf.slice(target, corner, cube)

    stream = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(patches)
    return (
        stream.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size, drop_remainder=patches >= batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


## Scoring


def predict_volume(model, image):
    """Per-voxel class probabilities of a whole volume in one pass (padded to a multiple of 16).

    Zero padding is air, as around the head. Returns float32 `(D, H, W, classes)`,
    cropped back to the volume.
    """
    step = 2**LEVELS
    padded = np.pad(image, [(0, -n % step) for n in image.shape])
    logits = np.asarray(model.predict_on_batch(add_channels(padded)[None]), "float32")[0]
    if keras.config.image_data_format() == "channels_first":
        logits = np.moveaxis(logits, 0, -1)
    logits = logits[tuple(slice(0, n) for n in image.shape)]
    return np.asarray(keras.ops.softmax(logits, axis=-1))


def dice_scores(truth, predicted, classes=3):
    """Dice 2|P & T| / (|P| + |T|) of each class (1.0 for a class absent from both)."""
    scores = []
    for k in range(classes):
        t, p = truth == k, predicted == k
        total = int(t.sum() + p.sum())
        scores.append(2.0 * int(np.sum(t & p)) / total if total else 1.0)
    return scores


def scores(image, labels):
    def evaluate(model):
        predicted = np.argmax(predict_volume(model, image), axis=-1)
        dice = dice_scores(labels, predicted)
        return {
            "test_dice_background": dice[0],
            "test_dice_grey_matter": dice[1],
            "test_dice_white_matter": dice[2],
            "test_dice_tissue": float(np.mean(dice[1:])),  # mean over GM and WM
            "test_voxel_accuracy": float(np.mean(predicted == labels)),
        }

    return evaluate


## Attention


def gate_attention(model, image, gate=GATE):
    """The attention of gate layer `gate` over a whole volume, at the volume's resolution.

    A sub-model reads the layer's second output (alpha, sub-sampled) next to the
    logits; alpha is repeated back up to the input's voxels (nearest neighbour).
    """
    layer = model.get_layer(gate)
    reader = keras.Model(model.inputs, layer.output[1])
    step = 2**LEVELS
    padded = np.pad(image, [(0, -n % step) for n in image.shape])
    alpha = np.asarray(reader.predict_on_batch(add_channels(padded)[None]), "float32")[0]
    alpha = alpha[..., 0] if keras.config.image_data_format() == "channels_last" else alpha[0]
    for axis in range(3):
        alpha = np.repeat(alpha, padded.shape[axis] // alpha.shape[axis], axis=axis)
    return alpha[tuple(slice(0, n) for n in image.shape)]


## Pictures


def slices(volume, centre):
    """Axial, coronal and sagittal slices through voxel `centre`, oriented for imshow(origin=lower)."""
    x, y, z = centre
    return [volume[:, :, z].T, volume[:, y, :].T, volume[x, :, :].T]


def plot(image, labels, predictions, attention, path):
    """Rows: axial, coronal and sagittal slices; columns: T1, labels, predictions, attention."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    centre = [round(float(c)) for c in np.argwhere(labels > 0).mean(axis=0)]
    centre[0] = max(0, centre[0] - labels.shape[0] // 6)  # sagittal: a hemisphere, not the midline
    colours = ListedColormap(["black", "tab:orange", "white"])
    columns = [("T1", image, "gray"), ("labels", labels, colours)]
    columns += [(name, predicted, colours) for name, predicted in predictions.items()]
    if attention is not None:
        columns.append((f"gate attention ({GATE})", attention, "magma"))
    views = ("axial", "coronal", "sagittal")
    fig, axes = plt.subplots(
        len(views),
        len(columns),
        figsize=(2.2 * len(columns) + 1.4, 2.3 * len(views)),
        squeeze=False,
    )
    for c, (title, volume, cmap) in enumerate(columns):
        for r, piece in enumerate(slices(volume, centre)):
            ax = axes[r, c]
            if title.startswith("gate"):
                ax.imshow(slices(image, centre)[r], cmap="gray", origin="lower")
                shown = ax.imshow(piece, cmap=cmap, vmin=0, vmax=1, alpha=0.7, origin="lower")
            elif cmap is colours:
                ax.imshow(
                    piece, cmap=cmap, vmin=-0.5, vmax=2.5, origin="lower", interpolation="nearest"
                )
            else:
                ax.imshow(piece, cmap=cmap, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(views[r], fontsize=8)
    if attention is not None:
        fig.colorbar(shown, ax=axes[:, -1].tolist(), fraction=0.05, label="alpha")
    legend = [
        Patch(facecolor=colours(k), edgecolor="gray", label=n) for k, n in enumerate(CLASS_NAMES)
    ]
    fig.legend(handles=legend, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=0.06, wspace=0.05, hspace=0.1)
    run_folder.save_figure(fig, path, dpi=100)
    plt.close(fig)


## Training


def set_precision(requested):
    """`precision.set_precision` for a 3-D model, with a warning where bfloat16 is unsafe.

    "auto" is float32 on TensorFlow's CPU (`spatial_rank=3`): TensorFlow 2.21's
    oneDNN CPU kernels turned these 3-D U-Nets' weights into NaN after one
    mixed_bfloat16 training step (graph mode, no XLA; the same step ran eagerly,
    under XLA, or with TF_ENABLE_ONEDNN_OPTS=0 gave finite weights).
    """
    policy = precision.set_precision(requested, spatial_rank=3)
    tensorflow_cpu = keras.backend.backend() == "tensorflow" and not precision.has_gpu()
    if policy == "mixed_bfloat16" and tensorflow_cpu:
        print(
            "Warning: mixed_bfloat16 3-D convolutions on TensorFlow's CPU kernels (oneDNN) "
            "can train to NaN; TF_ENABLE_ONEDNN_OPTS=0 or --precision float32 avoid it.",
            file=sys.stderr,
        )
    return policy


def widths(width):
    return tuple(width * 2**level for level in range(LEVELS + 1))


def main(argv=None, callbacks=()):
    """Trains each model; returns {model: summary}."""
    args = parse_args(argv)
    # First: a multi-worker strategy must configure TensorFlow before it runs anything.
    distribution = distribute.start(args.distribute)
    output_dir = distribution.folder(args.output_dir)
    os.makedirs(output_dir, exist_ok=True)
    policy = set_precision(args.precision)
    image, labels = load_volume(args.resolution)
    (train_image, test_image), (train_labels, test_labels) = (
        halves(image, args.split),
        halves(labels, args.split),
    )
    train_data = patch_pipeline(
        train_image, train_labels, args.patch_size, args.patches, args.batch_size, args.seed
    )
    steps = int(train_data.cardinality())
    shares = np.bincount(labels.ravel(), minlength=3) / labels.size
    print(
        f"MNI152 T1 template at {args.resolution} mm, {image.shape} voxels "
        f"({', '.join(f'{n} {s:.1%}' for n, s in zip(CLASS_NAMES, shares))}); "
        f"{args.split}: train half {train_image.shape}, test half {test_image.shape}; "
        f"{args.patches} patches of {args.patch_size}^3 per epoch, {policy}"
    )
    shape = (None, None, None, 1)
    if keras.config.image_data_format() == "channels_first":
        shape = (1, None, None, None)
    results, predictions, attention = {}, {}, None
    for name in args.models:
        keras.utils.set_random_seed(args.seed)
        with distribution:
            with distribution.scope():
                model = MODELS[name](
                    classes=len(CLASS_NAMES), input_shape=shape, dims=3, filters=widths(args.width)
                )
                distribution.prepare(model)
                train_classifier.compile_model(
                    model, args.learning_rate, args.epochs * max(steps, 1)
                )
            print(
                f"\n## {model.name}: {model.count_params():,} parameters, {distribution.replicas} replica(s)"
            )
            summary = run_folder.train(
                model,
                os.path.join(output_dir, name),
                train_data,
                args.epochs,
                scores(test_image, test_labels),
                overwrite=args.overwrite,
                verbose=args.verbose,
                callbacks=callbacks,
                scope=distribution.scope,
                describe={
                    "model": model.name,
                    "split": args.split,
                    "resolution_mm": args.resolution,
                    "patch_size": args.patch_size,
                    "precision": policy,
                },
                min_steps=MIN_STEPS,
                short_run=SHORT_RUN,
            )
        results[name] = summary
        reloaded = run_folder.load_model(summary["model_path"])
        predictions[name] = np.argmax(predict_volume(reloaded, test_image), axis=-1)
        if name == "attention_unet":
            attention = gate_attention(reloaded, test_image)
        print(f"{model.name}: {run_folder.summary_line(summary)}")
    plot_path = os.path.join(output_dir, "segment_volumes.png")
    plot(test_image, test_labels, predictions, attention, plot_path)
    for name, summary in results.items():
        print(
            f"{name}: test Dice background {summary['test_dice_background']:.4f}, grey matter "
            f"{summary['test_dice_grey_matter']:.4f}, white matter "
            f"{summary['test_dice_white_matter']:.4f}; {summary['parameters']:,} parameters, "
            f"{summary['train_seconds']:.0f} s training"
        )
    print(f"Slices: {plot_path}")
    return results


if __name__ == "__main__":
    try:
        main()
    except data.DataError as error:  # one line: the data cannot be had
        raise SystemExit(f"error: {error}") from None
