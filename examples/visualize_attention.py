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
PNG per layer into `--output-dir`:

- spatial maps (CBAM's spatial gate, the Residual Attention soft mask averaged
  over channels) are drawn over the images;
- pairwise maps (self-attention, non-local, DANet's position attention) and
  criss-cross maps are drawn for the centre pixel: where it looks;
- channel gates (SE, ECA, CBAM's channel gate) are drawn as bar charts;
- the rest (channel-to-channel affinities, selective-kernel branch weights,
  spatial-transformer matrices) has no picture here and is skipped with a note.

    python examples/train_classifier.py --attention cbam
    python examples/visualize_attention.py --model runs/digits_small_cnn_cbam/model.keras
"""

## Setup

import argparse
import os

import keras
import numpy as np

import keras_attention
from keras_attention import data
from keras_attention.layers.base import ImageAttentionLayer


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


def to_channels_last(maps, layer):
    if layer.data_format == "channels_first":
        return np.moveaxis(maps, 1, -1)
    return maps


def describe(layer, weights, height, width):
    """("spatial", (batch, h, w)), ("bars", (batch, C)) or ("skip", reason).

    `height` and `width` are those of the layer's input feature map.
    """
    if weights.ndim == 2:
        return "bars", weights
    if isinstance(layer, keras_attention.layers.CrissCrossAttention):
        # (batch, H, W, H + W) of every pixel; keep the centre pixel's cross.
        i, j = height // 2, width // 2
        cross = np.zeros((len(weights), height, width), "float32")
        cross[:, :, j] = weights[:, i, j, :height]
        cross[:, i, :] += weights[:, i, j, height:]
        return "spatial", cross
    if weights.ndim == 4:
        return "spatial", to_channels_last(weights, layer).mean(axis=-1)
    if weights.ndim == 3 and weights.shape[1] == height * width:
        # Query x key positions: the centre query's weights over the keys.
        keys = weights[:, (height // 2) * width + width // 2, :]
        if keys.shape[1] == height * width:
            return "spatial", keys.reshape(-1, height, width)
        pooled = ((height + 1) // 2, (width + 1) // 2)  # non-local sub-sampling
        if keys.shape[1] == pooled[0] * pooled[1]:
            return "spatial", keys.reshape(-1, *pooled)
    return "skip", f"weights of shape {weights.shape[1:]} are not a spatial map or a gate"


def upsample(maps, height, width):
    """Nearest-neighbour resizing of (batch, h, w) maps to the image size."""
    rows = np.arange(height) * maps.shape[1] // height
    cols = np.arange(width) * maps.shape[2] // width
    return maps[:, rows][:, :, cols]


def plot(name, kind, maps, images, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(images)
    fig, axes = plt.subplots(1, count, figsize=(2.2 * count, 2.4 if kind == "spatial" else 2.0))
    axes = np.atleast_1d(axes)
    if kind == "spatial":
        maps = upsample(maps, *images.shape[1:3])
    for ax, image, weights in zip(axes, images, maps):
        if kind == "spatial":
            ax.imshow(image if image.shape[-1] == 3 else image[..., 0], cmap="gray")
            ax.imshow(weights, cmap="jet", alpha=0.45)
            ax.set_axis_off()
        else:
            ax.bar(np.arange(len(weights)), weights, width=1.0)
            ax.set_ylim(0, 1)
            ax.set_xlabel("channel", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    """Writes one PNG per attention map; returns {map name: path or skip reason}."""
    args = parse_args(argv)
    model = keras.saving.load_model(args.model)  # safe mode: registered layers only
    layers = attention_layers(model)
    if not layers:
        raise SystemExit(f"{args.model} has no keras_attention layers to draw.")
    size = model.input_shape[1]  # square images, as the examples train on
    dataset = data.load(args.dataset, batch_size=args.num_images, image_size=size, augment="none")
    images, _ = next(iter(dataset.test))
    images = np.asarray(images, "float32")
    weights = attention_model(model, layers).predict(images, verbose=0)

    os.makedirs(args.output_dir, exist_ok=True)
    results = {}
    for name, maps in weights.items():
        layer = model.get_layer(name.split("/")[0])
        kind, value = describe(
            layer, np.asarray(maps, "float32"), *feature_size(model, layer, images)
        )
        if kind == "skip":
            print(f"{name}: skipped, {value}")
            results[name] = value
            continue
        path = os.path.join(args.output_dir, name.replace("/", "_") + ".png")
        plot(name, kind, value, images, path)
        print(f"{name}: {kind} map -> {path}")
        results[name] = path
    return results


if __name__ == "__main__":
    main()
