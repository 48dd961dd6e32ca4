"""
Title: Video classification with non-local blocks
Author: keras_attention contributors
Description: A small I3D with and without non-local blocks on moving-digit clips whose
label relates the first frames to the last ones, at another place.

## Introduction

Non-local Neural Networks (Wang, Girshick, Gupta and He, CVPR 2018) add blocks to
an I3D video network (Carreira and Zisserman, CVPR 2017) in which every position of
the clip attends to every other position, across frames and places, in one step;
convolutions relate only neighbours and need many layers to connect distant ones.
This example trains a small I3D (three Conv3D stages) with and without non-local
blocks on clips of the offline MNIST digits, several seeds each, and reports the
mean and spread of their test accuracies.

## The task: "same digit before and after?"

Each clip (8 frames of 32x32 by default, as in Moving MNIST: digits halved to
14x14 bounce off the borders) shows one digit moving through its first 3 frames,
then 2 empty frames, then a *different image* of a digit moving through its last 3
frames, starting at least a third of the canvas away from where the first one
left. The label is 1 when the two digits are of the same class, 0 otherwise (half
and half). The design rules out the shortcuts:

- no single frame tells the label: each shows one digit or none, and a digit is
  "same" exactly as often as "different";
- no window of 3 consecutive frames tells it either (the empty frames keep the two
  digits 3 frames apart), nor does a comparison of pixels: the two digits are
  different handwritten images, at different places;
- a model that scores frames (or short windows) independently and sums the scores,
  i.e. per-frame features pooled and read by a linear layer, cannot decide it: with
  s(d) the score of a digit d, "same" needs s(a) + s(a) > 0 for every a and
  "different" s(a) + s(b) < 0 for every a != b, which contradict each other.

So the network must relate what it saw in the first frames to what it sees in the
last ones, at another place. The I3D does it only once its stacked 3x3x3
convolutions and poolings span the gap; a non-local block does it in one layer.
Training clips pair digits of the training split, the validation clips (10%, held
out from the training clips) too, and the test clips pair test digits only: the
test scores unseen handwriting. By default the digits are 0, 1 and 2
(`--digit-classes 3`): with all ten, neither model left chance (50%) within 6
epochs of 3,600 clips on a CPU.

With the defaults (3,600 training clips, 8 epochs, 3 seeds, float32) on a 2-core
AMD EPYC shared with other jobs, the run took 13 min: I3D 81.9% +- 1.0 test
accuracy, NL-I3D 81.5% +- 0.2 (standard deviation over the seeds); both plateau
at about 82% after 5 epochs, so at this budget the non-local block does not
raise accuracy. In the picture (seed 0) one query on the last digit puts 70% of
its weight on frames 0-3 and 4% on its own frames, spread over several places; in
a trial run of the same settings 70% fell on the first digit itself.

    python examples/classify_video.py                  # both models, 3 seeds, 2-CPU minutes
    python examples/classify_video.py --model nl_i3d --seeds 1
    # a GPU: all ten digits, more clips, wider and longer training
    python examples/classify_video.py --digit-classes 10 --clips 20000 --width 32 \
        --epochs 30 --batch-size 128

It prints one summary line per model (test accuracy mean +- standard deviation over
the seeds) and writes `results.json` and `nonlocal_attention.png` under
`--output-dir`: one test clip of the first seed's non-local model, with the
attention of one query position (on the last frames' digit) over every frame
(`--picture-clips N`: the first N test clips; `--picture PATH`: another file, e.g.
`docs/volumes_attention.png`, drawn from a finished run without training again).
Each (model, seed) trains in a run folder of its own (`<output-dir>/i3d_seed0/`,
...) as in `train_classifier.py`: checkpoints that resume, TensorBoard logs,
`model.keras` reloaded before it is scored, and `--overwrite` to train again.
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

import keras_attention
from keras_attention import data
from keras_attention import precision

import cli
import distribute
import run_folder
import train_classifier

MODELS = ("i3d", "nl_i3d")
VALIDATION_SPLIT = 0.1
# The clips of the training digits; the test clips pair test digits (a quarter as many).
DEFAULT_CLIPS = 4000


def parse_args(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--model",
        default="both",
        choices=(*MODELS, "both"),
        help="i3d: three Conv3D stages; nl_i3d: the same with non-local blocks "
        "(--nonlocal-blocks) after its second and third stages; both: each in turn.",
    )
    parser.add_argument(
        "--nonlocal-blocks",
        type=int,
        default=1,
        choices=(1, 2),
        help="Non-local blocks in nl_i3d: 1 after stage 2 (4x8x8 positions at the "
        "defaults), 2 adds one after stage 3 (2x4x4).",
    )
    parser.add_argument("--seeds", type=int, default=3, help="Seeds per model (0, 1, ...).")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS, help="Training clips.")
    parser.add_argument(
        "--digit-classes",
        type=int,
        default=3,
        help="Use the digits 0 to N-1 (2-10): fewer classes are told apart sooner.",
    )
    parser.add_argument("--frames", type=int, default=8, help="Frames per clip.")
    parser.add_argument("--canvas", type=int, default=32, help="Frame height and width.")
    parser.add_argument("--gap", type=int, default=2, help="Empty frames between the two digits.")
    parser.add_argument(
        "--width", type=int, default=16, help="Channels of the first stage (then x2, x4)."
    )
    parser.add_argument("--epochs", type=int, default=8, help="Training epochs of each run.")
    parser.add_argument("--batch-size", type=int, default=32, help="Global batch size.")
    parser.add_argument(
        "--learning-rate", type=float, default=3e-3, help="Peak Adam learning rate (cosine decay)."
    )
    cli.add_precision_argument(parser, spatial_rank=3)
    distribute.add_argument(parser)
    parser.add_argument(
        "--picture",
        default=None,
        help="Where the attention picture goes (default: nonlocal_attention.png in "
        "--output-dir), e.g. docs/volumes_attention.png.",
    )
    parser.add_argument(
        "--picture-clips",
        type=int,
        default=1,
        help="Test clips in the attention picture (the first ones), two rows each.",
    )
    cli.add_run_folder_arguments(
        parser,
        os.path.join("runs", "classify_video"),
        "Where results.json, nonlocal_attention.png and the run folders go.",
    )
    return parser.parse_args(argv)


## Moving-digit clips


def shrink_digits(images, size):
    """uint8 digits `(N, 28, 28, 1)` resized to `(N, size, size, 1)` uint8 (antialiased)."""
    resized = tf.image.resize(tf.cast(images, "float32"), (size, size), antialias=True)
    return np.clip(np.rint(resized.numpy()), 0, 255).astype("uint8")


def _bounce(rng, count, room):
    """`count` top-left corners of a digit moving in a straight line, reflected at 0 and `room`."""
    position = rng.uniform(0, room, 2)
    velocity = rng.uniform(1.0, 3.0, 2) * rng.choice([-1.0, 1.0], 2)
    corners = []
    for _ in range(count):
        corners.append(np.rint(position).astype(int))
        position = position + velocity
        for axis in range(2):
            if position[axis] < 0:
                position[axis], velocity[axis] = -position[axis], -velocity[axis]
            elif position[axis] > room:
                position[axis], velocity[axis] = 2 * room - position[axis], -velocity[axis]
    return np.array(corners)


def same_digit_clips(images, labels, count, frames=8, canvas=32, gap=2, seed=0):
    """Clips of a digit, empty frames, then another digit elsewhere; label: same class?

    The first `(frames - gap) // 2` frames show digit image `first[i]` bouncing
    (Moving MNIST's straight lines reflected at the borders), the next `gap`
    frames are empty, and the last frames show image `last[i]` (always another
    image) bouncing from a start at least `canvas / 3` pixels (Euclidean, top-left
    corners) from where the first digit was last seen. Exactly half of the clips
    (`count // 2`, in random order) pair two digits of the same class.

    Args:
        images: uint8 array `(N, size, size, 1)`, the digits (size < canvas).
        labels: int array `(N,)`, their classes; every class needs 2 images.
        count: int, the number of clips.
        frames: int, frames per clip (`frames - gap >= 2`).
        canvas: int, frame height and width.
        gap: int, empty frames between the two digits.
        seed: int, the random draw.

    Returns:
        `(clips, same, info)`: clips uint8 `(count, frames, canvas, canvas, 1)`,
        labels int32 `(count,)` (1: same class), and a dict of arrays: `first`
        and `last` (indices into `images`), `corners` `(count, frames, 2)` (the
        digit's top-left (row, column) in each frame, -1 in the empty ones).
    """
    size = images.shape[1]
    for name, value, low in (("count", count, 1), ("frames", frames, 3), ("gap", gap, 0)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}. Received: {name}={value!r}")
    if frames - gap < 2:
        raise ValueError(
            f"`gap` must leave at least 2 frames for the digits. Received: gap={gap!r} "
            f"with frames={frames!r}"
        )
    if not isinstance(canvas, (int, np.integer)) or canvas < size + 3:
        raise ValueError(
            f"`canvas` must be an int >= the digit size + 3 ({size + 3}). Received: canvas={canvas!r}"
        )
    labels = np.asarray(labels)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    if min(len(members) for members in by_class.values()) < 2:
        raise ValueError("Every class needs at least 2 images to make 'same' clips.")
    rng = np.random.default_rng(seed)
    shown = (frames - gap) // 2
    tail = frames - gap - shown
    room = canvas - size
    same = rng.permutation(np.arange(count) < count // 2).astype("int32")
    clips = np.zeros((count, frames, canvas, canvas, 1), "uint8")
    corners = np.full((count, frames, 2), -1, "int64")
    first = rng.integers(0, len(images), count)
    last = np.empty(count, "int64")
    for i in range(count):
        a_class = labels[first[i]]
        if same[i]:
            pool = by_class[a_class][by_class[a_class] != first[i]]
        else:
            pool = np.flatnonzero(labels != a_class)
        last[i] = rng.choice(pool)
        corners[i, :shown] = _bounce(rng, shown, room)
        while True:  # the second digit starts away from where the first was last seen
            path = _bounce(rng, tail, room)
            if np.hypot(*(path[0] - corners[i, shown - 1])) >= canvas / 3:
                break
        corners[i, frames - tail :] = path
        for t in range(frames):
            if corners[i, t, 0] < 0:
                continue
            digit = images[first[i] if t < shown else last[i]]
            y, x = corners[i, t]
            clips[i, t, y : y + size, x : x + size] = digit
    return clips, same, {"first": first, "last": last, "corners": corners}


def digit_size(canvas):
    """The digits' size on a canvas: halved (14) below 48 pixels, else MNIST's 28."""
    return 14 if canvas < 48 else 28


def clip_digits(canvas, classes=10):
    """The offline digits 0 to `classes - 1`, train and test splits, at `digit_size(canvas)`."""
    if not isinstance(classes, int) or not 2 <= classes <= 10:
        raise ValueError(f"`classes` must be an int in [2, 10]. Received: classes={classes!r}")
    size = digit_size(canvas)
    splits = []
    for images, labels in data.load_digits():
        keep = labels < classes
        splits.append((shrink_digits(images[keep], size), labels[keep]))
    return tuple(splits)


def clip_data(args):
    """Train, validation and test pipelines of `(clip, same)`, and the test arrays."""
    (x_train, y_train), (x_test, y_test) = clip_digits(args.canvas, args.digit_classes)
    shape = {"frames": args.frames, "canvas": args.canvas, "gap": args.gap}
    train = same_digit_clips(x_train, y_train, args.clips, seed=1, **shape)
    test = same_digit_clips(x_test, y_test, max(2, args.clips // 4), seed=2, **shape)

    def scale(clip, label):
        return tf.cast(clip, "float32") / 255.0, label

    train_ds, validation_ds = data.split_off(
        tf.data.Dataset.from_tensor_slices(train[:2]), VALIDATION_SPLIT
    )
    bundle = data.Data(
        data.pipeline(train_ds, args.batch_size, True, scale, seed=0),
        data.pipeline(tf.data.Dataset.from_tensor_slices(test[:2]), args.batch_size, False, scale),
        train[0].shape[1:],
        2,
        int(train_ds.cardinality()),
        len(test[1]),
        data.pipeline(validation_ds, args.batch_size, False, scale),
        int(validation_ds.cardinality()),
    )
    return bundle, test


## The models


def conv_bn_relu(x, filters, kernel, strides, name):
    x = keras.layers.Conv3D(
        filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def build_model(name, input_shape, width=16, nonlocal_blocks=1):
    """A small I3D (`"i3d"`) or the same with non-local blocks (`"nl_i3d"`), float32 logits.

    The stem is a 3x5x5 convolution with stride 1x2x2, then three stages of two
    3x3x3 convolutions (`width`, 2x and 4x channels); stages 2 and 3 start with a
    2x2x2 max-pooling, so 8x32x32 clips become 8x16x16, 4x8x8 and 2x4x4 maps
    (receptive field in time: 19 frames, but the 3 frames apart are first joined
    in stage 2). `"nl_i3d"` puts a `NonLocalBlock` (embedded Gaussian, 1x2x2
    sub-sampling of keys, the identity at initialisation) after stage 2, where the
    paper puts its blocks (res3, res4: the middle stages), and, with
    `nonlocal_blocks=2`, one after stage 3. The head is global average pooling
    and one linear layer, computed in float32.
    """
    if name not in MODELS:
        raise ValueError(f"`name` must be one of {MODELS}. Received: name={name!r}")
    inputs = keras.Input(input_shape, name="clip")
    x = conv_bn_relu(inputs, width, (3, 5, 5), (1, 2, 2), "stem")
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        if stage > 1:
            x = keras.layers.MaxPooling3D(2, padding="same", name=f"stage{stage}_pool")(x)
        x = conv_bn_relu(x, filters, 3, 1, f"stage{stage}_a")
        x = conv_bn_relu(x, filters, 3, 1, f"stage{stage}_b")
        if name == "nl_i3d" and 2 <= stage < 2 + nonlocal_blocks:
            x = keras_attention.layers.NonLocalBlock(name=f"nonlocal{stage - 1}")(x)
    x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
    outputs = keras.layers.Dense(2, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


## Training


def accuracy(dataset):
    def scores(model):
        model.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
        )
        loss, value = model.evaluate(dataset.test, verbose=0)
        return {"test_accuracy": float(value), "test_loss": float(loss)}

    return scores


def train_one(name, seed, dataset, args, policy, distribution):
    keras.utils.set_random_seed(seed)
    with distribution.scope():
        model = build_model(name, dataset.input_shape, args.width, args.nonlocal_blocks)
        distribution.prepare(model)
        steps = int(dataset.train.cardinality())
        train_classifier.compile_model(model, args.learning_rate, args.epochs * max(steps, 1))
    print(f"\n## {name}, seed {seed}: {model.count_params():,} parameters")
    return run_folder.train(
        model,
        os.path.join(distribution.folder(args.output_dir), f"{name}_seed{seed}"),
        dataset.train,
        args.epochs,
        accuracy(dataset),
        validation_data=dataset.validation,
        overwrite=args.overwrite,
        verbose=args.verbose,
        scope=distribution.scope,
        describe={"model": name, "seed": seed, "precision": policy},
    )


## The non-local attention of one query


def query_attention(model, clip, query):
    """The first non-local block's attention of one query over the clip.

    Args:
        model: an `nl_i3d` model.
        clip: float array `(frames, H, W, 1)`.
        query: `(frame, row, column)` in the block's input grid.

    Returns:
        `(weights, grid)`: float32 `(D, h, w)` weights over the key positions
        (sum 1), and the block's input grid `(D, H', W')`.
    """
    block = model.get_layer("nonlocal1")
    features = keras.Model(model.input, block.input)(clip[None], training=False)
    _, attention = block(features, training=False, return_attention=True)
    grid = tuple(int(s) for s in features.shape[1:4])
    keys = (grid[0], -(-grid[1] // 2), -(-grid[2] // 2))  # 1x2x2 sub-sampling, "same"
    index = (query[0] * grid[1] + query[1]) * grid[2] + query[2]
    weights = np.asarray(keras.ops.convert_to_numpy(attention[0, index]), "float32")
    return weights.reshape(keys), grid


def _draw_clip_attention(axes, model, clip, label, info):
    """Draws one clip (axes[0]) over its query's attention in each frame (axes[1]).

    The query is the centre of the last frame's digit. The weights are shown on one
    colour scale per clip, upsampled to the frame size, with the share of the total
    that each frame gets in its title. The block sits after a 2x2x2 pooling, so each
    key covers 2 frames: the two frames share its weight equally. Returns the last
    attention image (for a colour bar) and the row's title.
    """
    frames, canvas = clip.shape[0], clip.shape[1]
    grid_probe = model.get_layer("nonlocal1").input.shape[1:4]
    scale = (frames // grid_probe[0], canvas // grid_probe[1])
    corner = info["corners"][-1]
    digit = info["size"]
    query = (
        (frames - 1) // scale[0],
        (corner[0] + digit // 2) // scale[1],
        (corner[1] + digit // 2) // scale[1],
    )
    weights, grid = query_attention(model, clip, query)
    logits = np.asarray(model(clip[None], training=False), "float32")[0]
    predicted = int(np.argmax(logits))
    up = (scale[0] * grid[0] // weights.shape[0], canvas // weights.shape[1])
    vmax = float(weights.max())
    for t in range(frames):
        axes[0][t].imshow(clip[t, ..., 0], cmap="gray", vmin=0, vmax=1)
        key_frame = weights[t // up[0]] / up[0]
        image = np.kron(key_frame, np.ones((up[1], up[1])))[:canvas, :canvas]
        shown = axes[1][t].imshow(image, cmap="magma", vmin=0, vmax=vmax / up[0])
        axes[0][t].set_title(f"frame {t}", fontsize=8)
        axes[1][t].set_title(f"{key_frame.sum():.0%}", fontsize=8)
        for row in (0, 1):
            axes[row][t].set_axis_off()
    centre = ((query[2] + 0.5) * scale[1], (query[1] + 0.5) * scale[1])
    for row in (0, 1):
        axes[row][frames - 1].plot(*centre, marker="+", color="cyan", markersize=12, mew=2)
    verdict = ("different", "same")
    return shown, f"true {verdict[label]}, predicted {verdict[predicted]}"


def plot_attention(model, clips, path):
    """Saves, for each `(clip, label, info)` of `clips`, the clip over one query
    position's attention in each frame (two rows per clip; see `_draw_clip_attention`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = clips[0][0].shape[0]
    fig = plt.figure(figsize=(1.5 * frames, 3.6 * len(clips)))
    title = f"{model.name}: query + (last frame's digit), attention over all frames"
    for index, (panel, (clip, label, info)) in enumerate(
        zip(fig.subfigures(len(clips), 1, squeeze=False)[:, 0], clips)
    ):
        axes = panel.subplots(2, frames)
        shown, verdict = _draw_clip_attention(axes, model, clip, label, info)
        panel.colorbar(shown, ax=list(axes[1]), fraction=0.02, pad=0.01, label="attention")
        name = f"clip {index}: " if len(clips) > 1 else f"{title}; "
        panel.suptitle(name + verdict, fontsize=9)
    if len(clips) > 1:
        fig.suptitle(title, fontsize=10, y=1.0 + 0.1 / len(clips))
    run_folder.save_figure(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)


## Main


def main(argv=None, callbacks=()):
    """Trains every (model, seed); returns {"runs": [...], "models": {name: stats}}."""
    del callbacks  # the runs take none (kept for the examples' common signature)
    args = parse_args(argv)
    if args.seeds < 1 or args.clips < 2 or args.picture_clips < 1:
        raise ValueError(
            f"`--seeds`, `--clips` and `--picture-clips` must be >= 1, >= 2 and >= 1. "
            f"Received: seeds={args.seeds}, clips={args.clips}, "
            f"picture_clips={args.picture_clips}"
        )
    # First: a multi-worker strategy must configure TensorFlow before it runs anything.
    distribution = distribute.start(args.distribute)
    output_dir = distribution.folder(args.output_dir)
    os.makedirs(output_dir, exist_ok=True)
    # auto: float32 on TensorFlow's CPU, whose bfloat16 Conv3Ds are unsound without
    # XLA and 16x slower than float32 through it (2-core AMD EPYC: 3.0 s against
    # 0.19 s a step of 32 clips).
    policy = precision.set_precision(args.precision, spatial_rank=3)
    dataset, test = clip_data(args)
    print(
        f"Clips {dataset.input_shape}: {dataset.train_size} train / "
        f"{dataset.validation_size} validation / {dataset.test_size} test, half 'same'; "
        f"policy {policy}"
    )
    names = MODELS if args.model == "both" else (args.model,)
    runs = []
    with distribution:
        for name in names:
            for seed in range(args.seeds):
                runs.append(train_one(name, seed, dataset, args, policy, distribution))
    results = {
        "runs": runs,
        "models": {},
        "replicas": distribution.replicas,
        "precision": policy,
    }
    for name in names:
        scores = np.array([r["test_accuracy"] for r in runs if r["model"] == name])
        results["models"][name] = {
            "test_accuracy_mean": float(scores.mean()),
            "test_accuracy_std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "seeds": len(scores),
            "parameters": next(r["parameters"] for r in runs if r["model"] == name),
            "train_seconds": float(sum(r["train_seconds"] for r in runs if r["model"] == name)),
        }
    if "nl_i3d" in names:
        model = run_folder.load_model(next(r["model_path"] for r in runs if r["model"] == "nl_i3d"))
        clips = [  # the first test clips
            (
                test[0][index].astype("float32") / 255.0,
                int(test[1][index]),
                {"corners": test[2]["corners"][index], "size": digit_size(args.canvas)},
            )
            for index in range(min(args.picture_clips, len(test[0])))
        ]
        path = args.picture or os.path.join(output_dir, "nonlocal_attention.png")
        plot_attention(model, clips, path)
        results["picture"] = path
        print(f"Attention of one query over the frames: {path}")
    run_folder.write_json(os.path.join(output_dir, "results.json"), results)
    for name, stats in results["models"].items():
        print(
            f"{name}: test accuracy {stats['test_accuracy_mean']:.4f} +- "
            f"{stats['test_accuracy_std']:.4f} (std over {stats['seeds']} seeds), "
            f"{stats['parameters']:,} parameters, {stats['train_seconds']:.0f} s training, "
            f"{policy}"
        )
    return results


if __name__ == "__main__":
    main()
