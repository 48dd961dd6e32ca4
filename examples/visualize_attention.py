"""
Title: Looking at attention maps
Author: keras_attention contributors
Description: Load a saved `.keras` model, find its attention layers and draw what
they attend to over the input images.

## Introduction

Every `keras_attention` layer returns its attention weights when called with
`return_attention=True`. This example loads a model (by default the one that
`train_classifier.py` saves), calls each attention layer again on its own input
tensor with `return_attention=True` in a new functional graph, and writes one
PNG per map into `--output-dir`. What is drawn follows from the map's shape
alone, so layers added to the package later are drawn without code here:

- spatial maps `(batch, H, W, ...)` (CBAM's spatial gate, a soft mask averaged
  over channels) are drawn over the images;
- pairwise maps `(batch, [heads,] H*W, N)` (self-attention, non-local, DANet's
  position attention; N = H*W or a sub-sampled grid) and criss-cross maps
  `(batch, H, W, H+W)` are drawn for the centre pixel, which is marked: where
  it looks;
- vectors `(batch, C)` (SE, ECA, CBAM's channel gate) are drawn as bar charts;
- the rest (channel-to-channel affinities, selective-kernel branch weights,
  spatial-transformer matrices) has no picture here and is skipped with a note.

Maps of one PNG share one colour scale, shown by a colorbar; each panel is
titled with the image's true label and the model's prediction (red when wrong).

    python examples/train_classifier.py --attention cbam
    python examples/visualize_attention.py --model runs/digits_small_cnn_cbam/model.keras
"""

## Setup

import argparse
import os
import sys

import keras
import numpy as np

from keras_attention import data
from keras_attention.layers.base import ImageAttentionLayer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_folder


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("## Introduction")[0].strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default=os.path.join("runs", "digits_small_cnn_cbam", "model.keras"),
        help="A .keras model with keras_attention layers (e.g. saved by train_classifier.py).",
    )
    parser.add_argument(
        "--dataset",
        default=data.DIGITS,
        help="Where the images come from: as in train_classifier.py; they are "
        "resized to the model's input size.",
    )
    parser.add_argument("--num-images", type=int, default=6, help="How many test images to draw.")
    parser.add_argument(
        "--output-dir",
        default=os.path.join("runs", "attention_maps"),
        help="Where the PNGs go (one per attention layer).",
    )
    return parser.parse_args(argv)


## Finding the attention layers


def attention_layers(model):
    """The keras_attention layers of `model`, in graph order."""
    return [layer for layer in model.layers if isinstance(layer, ImageAttentionLayer)]


def attention_model(model, layers):
    """A model from the images to {layer name: attention weights}.

    A twin of each layer (same config and weights) is called on the layer's
    own input tensor with `return_attention=True`. Calling the layer itself a
    second time would not do: Keras 3.15 checks a functional graph with each
    layer's *first* call's outputs, and the first call returned no attention.
    """
    outputs = {}
    for layer in layers:
        twin = layer.__class__.from_config({**layer.get_config(), "name": f"{layer.name}_maps"})
        _, attention = twin(layer.input, return_attention=True)
        twin.set_weights(layer.get_weights())
        if isinstance(attention, dict):
            for key, value in attention.items():
                outputs[f"{layer.name}/{key}"] = value
        else:
            outputs[layer.name] = attention
    return keras.Model(model.inputs, outputs)


## Turning weights into pictures


def feature_size(model, layer, images):
    """(height, width) of the layer's input feature map for these images."""
    shape = tuple(layer.input.shape)
    if None in shape[1:]:  # a model of any image size: look at a real batch
        shape = keras.Model(model.inputs, layer.input).predict(images[:1], verbose=0).shape
    axes = (2, 3) if layer.data_format == "channels_first" else (1, 2)
    return shape[axes[0]], shape[axes[1]]


def to_channels_last(maps, data_format):
    if data_format == "channels_first":
        return np.moveaxis(maps, 1, -1)
    return maps


def pooled_grid(size, height, width):
    """(h, w, stride) of a grid of `size` cells that sub-samples (height, width), or None."""
    for stride in range(1, 9):
        h, w = -(-height // stride), -(-width // stride)
        if h * w == size:
            return h, w, stride
    return None


def describe(weights, height, width, data_format="channels_last"):
    """What to draw of attention `weights` (batch first), by their shape alone.

    `height` and `width` are those of the layer's input feature map.

    Returns:
        `("spatial", maps (batch, h, w), query)` where `query` is the (row,
        column) on the map's grid of the pixel the map belongs to, or None;
        `("bars", (batch, C))`; or `("skip", reason)`.
    """
    i, j = height // 2, width // 2  # the query pixel of pairwise and criss-cross maps
    positions = height * width
    if weights.ndim == 2:
        return "bars", weights, None
    if weights.ndim >= 3 and weights.shape[-2] == positions:
        # Query x key positions, maybe per head: the centre query's weights over the keys.
        keys = weights[..., i * width + j, :]
        keys = keys.reshape(len(keys), -1, keys.shape[-1]).mean(axis=1)  # heads averaged
        grid = pooled_grid(keys.shape[-1], height, width)
        if grid is not None:
            h, w, stride = grid
            return "spatial", keys.reshape(-1, h, w), (i // stride, j // stride)
    if weights.ndim >= 4:
        maps = to_channels_last(weights, data_format) if weights.ndim == 4 else weights
        if maps.shape[1:3] == (height, width) and maps.shape[3:] == (height + width,):
            # Criss-cross: every pixel's column (H) then row (W); keep the centre's cross.
            cross = np.zeros((len(maps), height, width), "float32")
            cross[:, :, j] = maps[:, i, j, :height]
            cross[:, i, :] += maps[:, i, j, height:]
            return "spatial", cross, (i, j)
        # A map over positions (with channels, heads or window cells after them).
        return "spatial", maps.reshape(*maps.shape[:3], -1).mean(axis=-1), None
    return "skip", f"weights of shape {weights.shape[1:]} are not a spatial map or a gate", None


def upsample(maps, height, width):
    """Nearest-neighbour resizing of (batch, h, w) maps to the image size."""
    rows = np.arange(height) * maps.shape[1] // height
    cols = np.arange(width) * maps.shape[2] // width
    return maps[:, rows][:, :, cols]


def panel_title(label, prediction):
    if prediction is None:
        return f"true {label}", "black"
    return f"true {label}, pred {prediction}", "black" if label == prediction else "red"


def plot(name, kind, maps, images, path, labels, predictions=None, query=None):
    """Saves `figure(...)` as a PNG at `path`."""
    import matplotlib.pyplot as plt

    fig = figure(name, kind, maps, images, labels, predictions, query)
    run_folder.save_figure(fig, path, dpi=100)
    plt.close(fig)


def figure(name, kind, maps, images, labels, predictions=None, query=None):
    """One panel per image, one colour scale (or y range) for all of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(images)
    fig, axes = plt.subplots(
        1, count, figsize=(2.2 * count + 0.8, 2.6 if kind == "spatial" else 2.2), squeeze=False
    )
    axes = axes[0]
    low, high = float(np.min(maps)), float(np.max(maps))
    if kind == "spatial":
        grid = maps.shape[1:3]
        maps = upsample(maps, *images.shape[1:3])
    for k, (ax, image, weights) in enumerate(zip(axes, images, maps)):
        prediction = None if predictions is None else predictions[k]
        title, colour = panel_title(labels[k], prediction)
        ax.set_title(title, fontsize=8, color=colour)
        if kind == "spatial":
            ax.imshow(image if image.shape[-1] == 3 else image[..., 0], cmap="gray")
            shown = ax.imshow(weights, cmap="jet", alpha=0.45, vmin=low, vmax=high)
            if query is not None:  # the pixel whose attention this is, at its cell's centre
                y = (query[0] + 0.5) * image.shape[0] / grid[0] - 0.5
                x = (query[1] + 0.5) * image.shape[1] / grid[1] - 0.5
                ax.plot(x, y, marker="x", color="white", markersize=8, markeredgewidth=2)
            ax.set_axis_off()
        else:
            ax.bar(np.arange(len(weights)), weights, width=1.0)
            ax.set_ylim(min(0.0, low), max(1.0, high))  # gates in [0, 1]; others wider
            ax.set_xlabel("channel", fontsize=7)
            ax.tick_params(labelsize=6)
    if kind == "spatial":
        bar = fig.colorbar(shown, ax=list(axes), fraction=0.03, pad=0.02)
        bar.ax.tick_params(labelsize=6)
    note = "  (x: the query pixel)" if query is not None else ""
    fig.suptitle(name + note, fontsize=9)
    return fig


def predicted_classes(model, images):
    """The model's argmax class per image, or None when it is not a classifier."""
    outputs = model.predict(images, verbose=0)
    if isinstance(outputs, (list, dict)) or np.ndim(outputs) != 2:
        return None
    return np.argmax(np.asarray(outputs, "float32"), axis=-1)


def main(argv=None):
    """Writes one PNG per attention map; returns {map name: path or skip reason}."""
    args = parse_args(argv)
    model = run_folder.load_model(args.model)  # safe mode: registered layers only
    layers = attention_layers(model)
    if not layers:
        raise SystemExit(f"{args.model} has no keras_attention layers to draw.")
    size = model.input_shape[1]  # square images, as the examples train on
    dataset = data.load(args.dataset, batch_size=args.num_images, image_size=size, augment="none")
    images, labels = next(iter(dataset.test))
    images, labels = np.asarray(images, "float32"), np.asarray(labels)
    weights = attention_model(model, layers).predict(images, verbose=0)
    predictions = predicted_classes(model, images)

    os.makedirs(args.output_dir, exist_ok=True)
    results = {}
    for name, maps in weights.items():
        layer = model.get_layer(name.split("/")[0])
        height, width = feature_size(model, layer, images)
        kind, value, query = describe(np.asarray(maps, "float32"), height, width, layer.data_format)
        if kind == "skip":
            print(f"{name}: skipped, {value}")
            results[name] = value
            continue
        path = os.path.join(args.output_dir, name.replace("/", "_") + ".png")
        plot(name, kind, value, images, path, labels, predictions, query)
        print(f"{name}: {kind} map -> {path}")
        results[name] = path
    return results


if __name__ == "__main__":
    try:
        main()
    except data.DataError as error:  # one line: the data cannot be had
        raise SystemExit(f"error: {error}") from None
