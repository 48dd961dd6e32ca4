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
- local maps are drawn for the centre pixel too: halo's blocked windows
  `(batch, blocks, heads, b*b, w*w)` (its block's haloed window), outlook's
  `(batch, h, w, heads, k*k, k*k)` (the weights it takes from each pixel once
  the windows are folded back), axial's per-line maps (its column and row);
- maps over units `(batch, H*W, n)` (external attention's memory, A2's
  descriptors, lambda's keys) show the unit that varies most over positions;
  these and the axial maps cannot be told by shape, so `MAP_LAYOUTS` names them;
- vectors `(batch, C)` (SE, ECA, CBAM's channel gate) are drawn as bar charts;
- the rest (channel-to-channel affinities, selective-kernel branch weights,
  spatial-transformer matrices) has no picture here and is skipped with a note.

Maps of one PNG share one colour scale, shown by a colorbar; each panel is
titled with the image's true label and the model's prediction (red when wrong).

    python examples/train_classifier.py --attention cbam
    python examples/visualize_attention.py --model runs/digits_small_cnn_cbam/model.keras
"""

## Setup

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tf_onednn

os.environ.update(tf_onednn.environment())  # before Keras imports TensorFlow

import keras
import numpy as np

from keras_attention import data
from keras_attention.layers.base import ImageAttentionLayer

import cli
import run_folder


def parse_args(argv=None):
    parser = cli.parser(__doc__)
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


# Maps whose shape cannot say what their axes are, by (layer class, key of the returned
# dict, None for a single map). "units": `(batch, H*W, n)` over n memory units,
# descriptors or key channels, not over key positions (read by shape, n = 64 on an 8x8
# map would pass for pairwise weights). "height" / "width": axial weights `(batch, lines,
# heads, L, L)` along the columns / the rows (the same shape on a square map).
# "branches": `(batch, M, C)` softmax weights of M branches per channel, drawn as
# the first branch's share (read by shape, M = C would pass for channel affinities).
MAP_LAYOUTS = {
    ("LambdaLayer", "keys"): "units",
    ("DoubleAttention", "gather"): "units",
    ("DoubleAttention", "distribute"): "units",
    ("ExternalAttention", None): "units",
    ("AxialAttention", "height"): "height",
    ("AxialAttention", "width"): "width",
    ("SelectiveKernel", None): "branches",
    ("SplitAttention", None): "branches",
}


TITLE_NOTES = {
    "units": "  (the unit that varies most over positions)",
    "branches": "  (the first branch's share)",
}


def map_layout(layer, name):
    """The MAP_LAYOUTS entry of the map `name` ("layer" or "layer/key") of `layer`, or None."""
    key = name.split("/", 1)[1] if "/" in name else None
    return MAP_LAYOUTS.get((layer.__class__.__name__, key))


def describe(weights, height, width, data_format="channels_last", layout=None):
    """What to draw of attention `weights` (batch first), by their shape alone.

    `height` and `width` are those of the layer's input feature map; `layout`
    is the map's MAP_LAYOUTS entry where its shape is not enough.

    Returns:
        `("spatial", maps (batch, h, w), query)` where `query` is the (row,
        column) on the map's grid of the pixel the map belongs to, or None;
        `("bars", (batch, C))`; or `("skip", reason)`.
    """
    i, j = height // 2, width // 2  # the query pixel of pairwise and criss-cross maps
    positions = height * width
    if layout == "units" and weights.shape[1] == positions:
        return "spatial", most_varying_unit(weights).reshape(-1, height, width), None
    if layout in ("height", "width"):
        return "spatial", axial_cross(weights, height, width, layout), (i, j)
    if layout == "branches":
        return "bars", weights[:, 0, :], None
    if weights.ndim == 2:
        return "bars", weights, None
    if weights.shape[1:] == (height, width):  # one weight per position (GC's pooling)
        return "spatial", weights, None
    if weights.ndim >= 3 and weights.shape[-2] == positions:
        # Query x key positions, maybe per head: the centre query's weights over the keys.
        keys = weights[..., i * width + j, :]
        keys = keys.reshape(len(keys), -1, keys.shape[-1]).mean(axis=1)  # heads averaged
        grid = pooled_grid(keys.shape[-1], height, width)
        if grid is not None:
            h, w, stride = grid
            return "spatial", keys.reshape(-1, h, w), (i // stride, j // stride)
    if weights.ndim == 5 and halo_window(weights.shape, height, width):
        return "spatial", halo_window_map(weights, height, width), (i, j)
    if weights.ndim == 6 and outlook_stride(weights.shape, height, width):
        return "spatial", outlook_map(weights, height, width), (i, j)
    if weights.ndim >= 4:
        maps = to_channels_last(weights, data_format) if weights.ndim == 4 else weights
        if maps.shape[1:3] == (height, width) and maps.shape[3:] == (height + width,):
            # Criss-cross: every pixel's column (H) then row (W); keep the centre's cross.
            cross = np.zeros((len(maps), height, width), "float32")
            cross[:, :, j] = maps[:, i, j, :height]
            cross[:, i, :] += maps[:, i, j, height:]
            return "spatial", cross, (i, j)
        if maps.ndim == 4 or maps.shape[1:3] == (height, width):
            # A map over positions (with channels, heads or window cells after them).
            return "spatial", maps.reshape(*maps.shape[:3], -1).mean(axis=-1), None
    return "skip", f"weights of shape {weights.shape[1:]} are not a spatial map or a gate", None


def most_varying_unit(weights):
    """(batch, H*W) weights of the unit whose weights vary most over the positions.

    The mean over units says nothing when each position's weights sum to 1 over
    them (external attention, A2's distribution); one unit for all images, so
    the panels compare.
    """
    unit = int(np.argmax(weights.std(axis=1).mean(axis=0)))
    return weights[:, :, unit]


def axial_cross(weights, height, width, axis):
    """The centre pixel's weights along its column ("height") or row ("width"), heads averaged.

    `weights`: `(batch, W, heads, H, H)` for "height", `(batch, H, heads, W, W)`
    for "width" (per line and head, query then key).
    """
    i, j = height // 2, width // 2
    maps = np.zeros((len(weights), height, width), "float32")
    if axis == "height":
        maps[:, :, j] = weights[:, j, :, i, :].mean(axis=1)
    else:
        maps[:, i, :] = weights[:, i, :, j, :].mean(axis=1)
    return maps


def halo_window(shape, height, width):
    """(block, halo) of blocked local weights `(batch, blocks, heads, b*b, w*w)`, or None."""
    block, window = math.isqrt(shape[3]), math.isqrt(shape[4])
    if block * block != shape[3] or window * window != shape[4] or (window - block) % 2:
        return None
    if window < block or height % block or width % block:
        return None
    if shape[1] != (height // block) * (width // block):
        return None
    return block, (window - block) // 2


def halo_window_map(weights, height, width):
    """The centre pixel's weights over its block's haloed window, on the map, heads averaged."""
    block, halo = halo_window(weights.shape, height, width)
    window = block + 2 * halo
    i, j = height // 2, width // 2
    index = (i // block) * (width // block) + j // block
    query = (i % block) * block + j % block
    cells = weights[:, index, :, query, :].mean(axis=1).reshape(-1, window, window)
    # The window starts `halo` pixels above and left of the block; cells off the map
    # (the zero padding) are dropped.
    padded = np.zeros((len(weights), height + 2 * halo, width + 2 * halo), "float32")
    top, left = (i // block) * block, (j // block) * block
    padded[:, top : top + window, left : left + window] = cells
    return padded[:, halo : halo + height, halo : halo + width]


def outlook_stride(shape, height, width):
    """The stride of outlook weights `(batch, h, w, heads, k*k, k*k)`, or None."""
    kernel = math.isqrt(shape[4])
    if kernel * kernel != shape[4] or shape[4] != shape[5] or kernel % 2 == 0:
        return None
    for stride in range(1, 9):
        if shape[1:3] == (-(-height // stride), -(-width // stride)):
            return stride
    return None


def outlook_map(weights, height, width):
    """The centre output pixel's weights over the input pixels, heads averaged.

    Each window (centre c, slots at c * stride + (u, v) - k // 2) mixes its source
    slots into its output slots and the windows are summed back onto the map, so
    the output pixel p takes from the pixel q the sum, over the windows and the
    output slot at p, of the weight at q's source slot.
    """
    stride = outlook_stride(weights.shape, height, width)
    kernel = math.isqrt(weights.shape[4])
    pad = kernel // 2
    i, j = height // 2, width // 2
    mixing = weights.mean(axis=3)  # (batch, h, w, k*k, k*k)
    maps = np.zeros((len(weights), height + 2 * pad, width + 2 * pad), "float32")
    for row in range(weights.shape[1]):
        for column in range(weights.shape[2]):
            u, v = i + pad - row * stride, j + pad - column * stride  # p's slot in this window
            if 0 <= u < kernel and 0 <= v < kernel:
                cells = mixing[:, row, column, u * kernel + v].reshape(-1, kernel, kernel)
                top, left = row * stride, column * stride
                maps[:, top : top + kernel, left : left + kernel] += cells
    return maps[:, pad : pad + height, pad : pad + width]


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
    width = fig.get_figwidth()
    # The title clear of the panels' titles; with a colorbar, a right margin of its
    # own. The layout is fixed first: adjusting it after `colorbar(ax=...)` moved
    # the panels back under the bar.
    right = 1 - 0.7 / width if kind == "spatial" else 0.97
    fig.subplots_adjust(top=0.78, bottom=0.04, right=right)
    if kind == "spatial":
        cax = fig.add_axes((right + 0.12 / width, 0.08, 0.12 / width, 0.66))
        bar = fig.colorbar(shown, cax=cax)
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
        layout = map_layout(layer, name)
        kind, value, query = describe(
            np.asarray(maps, "float32"), height, width, layer.data_format, layout
        )
        if kind == "skip":
            print(f"{name}: skipped, {value}")
            results[name] = value
            continue
        path = os.path.join(args.output_dir, name.replace("/", "_") + ".png")
        title = name + TITLE_NOTES.get(layout, "")
        plot(title, kind, value, images, path, labels, predictions, query)
        print(f"{name}: {kind} map -> {path}")
        results[name] = path
    return results


if __name__ == "__main__":
    try:
        main()
    except data.DataError as error:  # one line: the data cannot be had
        raise SystemExit(f"error: {error}") from None
