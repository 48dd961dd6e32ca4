"""
Title: A gallery of trained attention maps
Author: keras_attention contributors
Description: Train every attention layer on the offline digits at once and draw
each layer's map on real test digits, for the documentation site.

## Introduction

The main job (`train_classifier.py`) trains one attention mechanism (CBAM by
default) and `visualize_attention.py` draws its maps. To show every layer's map
after training, with no layer left at its initial weights, this script trains
one small model with a branch per layer: the first two stages of
`AttentionCNN` (16 and 32 filters, a 14x14 feature map on the 28x28 digits) are
shared, and each branch is one attention layer, global average pooling and its
own `Dense(10)` classifier; the loss is the sum of the branches' losses. Every
attention layer thus learns to pick out what its classifier needs, from the
same features. `AttentionGate` takes the features and, as its gating signal,
their 2x2 max-pooled copy.

The maps are drawn by `visualize_attention.py`'s own code (`describe`,
`figure`): one PNG per map into `--output-dir` (the site's `docs/gallery/`),
and `--pages` writes the gallery's Markdown pages, one per domain.

    python examples/gallery.py                      # trains (~minutes on a CPU), then draws
    python examples/gallery.py --epochs 1 --limit 1000
"""

## Setup

import argparse
import json
import os
import sys

import keras
import numpy as np

import keras_attention
from keras_attention import data
from keras_attention import models
from keras_attention import registry

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import visualize_attention

# Arguments for the 14x14x32 feature map where a default does not fit it: BoT's
# embeddings fix the size, halo blocks must divide it, groups must divide 32.
LAYER_KWARGS = {
    "sge": {"groups": 8},
    "shuffle": {"groups": 8},
    "bot": {"feature_size": (14, 14), "num_heads": 4},
    "halo": {"block_size": 7, "halo_size": 2, "num_heads": 4},
    "axial": {"span": 14, "num_heads": 4},
    "lambda": {"num_heads": 4},
    "outlook": {"num_heads": 4},
}
FEATURES = 14


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("## Introduction")[0].strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=2, help="Training epochs.")
    parser.add_argument("--limit", type=int, default=None, help="Use only this many digits.")
    parser.add_argument("--num-images", type=int, default=3, help="Test digits per picture.")
    parser.add_argument(
        "--output-dir", default=os.path.join("docs", "gallery"), help="Where the PNGs go."
    )
    parser.add_argument(
        "--model",
        default=os.path.join("runs", "gallery", "model.keras"),
        help="The trained model: loaded when it exists, else trained and saved here.",
    )
    parser.add_argument(
        "--pages", action="store_true", help="Also write the gallery's Markdown pages."
    )
    return parser.parse_args(argv)


## The model: shared features, one branch per layer


def build_model(names):
    cnn = models.AttentionCNN(None, widths=(16, 32))
    features = cnn.get_layer("stage2_conv2_relu").output
    outputs = {}
    for name in names:
        cls = registry.get_class(name)
        layer = cls(name=f"{name}_attention", **LAYER_KWARGS.get(name, {}))
        if name == "attention_gate":
            gating = keras.layers.MaxPooling2D(2, name="gating_pool")(features)
            x = layer([features, gating])
        else:
            x = layer(features)
        x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
        outputs[name] = keras.layers.Dense(10, dtype="float32", name=name)(x)
    return keras.Model(cnn.input, outputs, name="gallery")


def train(names, args):
    dataset = data.load(data.DIGITS, batch_size=64, augment="none", seed=0, limit=args.limit)
    per_branch = lambda x, y: (x, {name: y for name in names})  # noqa: E731
    model = build_model(names)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        keras.optimizers.Adam(2e-3),
        {name: loss for name in names},
        metrics={name: ["accuracy"] for name in names},
    )
    history = model.fit(dataset.train.map(per_branch), epochs=args.epochs, verbose=2)
    scores = model.evaluate(dataset.test.map(per_branch), verbose=0, return_dict=True)
    os.makedirs(os.path.dirname(args.model) or ".", exist_ok=True)
    model.save(args.model)
    return model, scores, history


## Drawing


def draw(model, names, args):
    """One PNG per map of each layer; returns {short name: [(map, png or skip reason)]}."""
    dataset = data.load(data.DIGITS, batch_size=256, augment="none", seed=0, limit=args.limit)
    images, labels = (np.asarray(t) for t in next(iter(dataset.test)))
    picks = [int(np.flatnonzero(labels == digit)[0]) for digit in range(args.num_images)]
    images, labels = images[picks].astype("float32"), labels[picks]
    logits = model.predict(images, verbose=0)
    os.makedirs(args.output_dir, exist_ok=True)
    drawn = {}
    for name in names:
        layer = model.get_layer(f"{name}_attention")
        maps = visualize_attention.attention_model(model, [layer]).predict(images, verbose=0)
        predictions = np.argmax(np.asarray(logits[name]), axis=-1)
        drawn[name] = []
        for key, weights in maps.items():
            layout = visualize_attention.map_layout(layer, key)
            kind, value, query = visualize_attention.describe(
                np.asarray(weights, "float32"), FEATURES, FEATURES, layer.data_format, layout
            )
            if kind == "skip":
                drawn[name].append((key, value))
                continue
            path = os.path.join(args.output_dir, key.replace("/", "_") + ".png")
            fig = visualize_attention.figure(key, kind, value, images, labels, predictions, query)
            fig.savefig(path, dpi=60)
            import matplotlib.pyplot as plt

            plt.close(fig)
            drawn[name].append((key, os.path.basename(path)))
    return drawn


## The gallery's pages

DOMAIN_TITLES = {
    "channel": "Channel attention",
    "spatial": "Spatial attention",
    "mixed": "Mixed channel and spatial attention",
}


def write_pages(drawn, scores, args):
    for domain, title in DOMAIN_TITLES.items():
        lines = [
            f"# {title}",
            "",
            "Each layer's attention map on test digits after training, drawn by",
            "`examples/gallery.py`: every layer is one branch of a small digits classifier",
            "(the first two stages of `AttentionCNN`, a 14x14x32 feature map, shared; each",
            f"branch with its own classifier), trained together for {args.epochs} epochs on",
            "the offline digits. Panels give the true digit and the branch's prediction;",
            "one colour scale (the colorbar) per picture; x marks the query pixel of",
            "pairwise maps. Gates over channels are bar charts.",
            "",
        ]
        for name in registry.available(domain):
            cls = registry.get_class(name)
            summary = cls.__doc__.strip().splitlines()[0]
            accuracy = scores.get(f"{name}_accuracy")
            lines += [f"## {cls.__name__}", "", f"`{name}`: {summary}", ""]
            if accuracy is not None:
                lines += [f"Test accuracy of its branch: {100 * accuracy:.1f}%.", ""]
            for key, result in drawn[name]:
                if result.endswith(".png"):
                    lines += [f"![{key}]({result})", ""]
                else:
                    lines += [f"`{key}`: no picture ({result}).", ""]
            lines += [f"API: [`{cls.__name__}`](../api/layers.md#keras_attention.layers.{cls.__name__})", ""]
        path = os.path.join(args.output_dir, f"{domain}.md")
        with open(path, "w") as f:
            f.write("\n".join(lines))
        print(f"{domain}: {path}")


def main(argv=None):
    args = parse_args(argv)
    names = keras_attention.available()
    scores_path = os.path.splitext(args.model)[0] + "_scores.json"
    if os.path.exists(args.model):
        model = keras.saving.load_model(args.model)
        with open(scores_path) as f:
            scores = json.load(f)
    else:
        model, scores, _ = train(names, args)
        with open(scores_path, "w") as f:
            json.dump(scores, f)
    for name in names:
        print(f"{name}: {100 * scores[f'{name}_accuracy']:.1f}%")
    drawn = draw(model, names, args)
    if args.pages:
        write_pages(drawn, scores, args)


if __name__ == "__main__":
    main()
