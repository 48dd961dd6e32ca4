"""One supported timm model: how to build it and what its checkpoint expects."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def spec(
    build,
    tag,
    size=224,
    crop=0.875,
    interpolation="bicubic",
    head="fc",
    url=None,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    tags=None,
):
    """A catalogue entry: `build(options)` makes the Keras model, the rest is timm's.

    `build` takes one `options.BuildOptions` and returns a functional model
    whose layers are named after timm's module paths ("." -> "_"). `tag` is timm's default pretrained tag,
    `head` the classifier's module path (a tuple of them, the main one first,
    where there are several: VOLO's head and aux_head), `url` a non-hub
    download; `size`, `crop`, `interpolation`, `mean` and `std` are the
    evaluation pipeline of the checkpoint (timm's `pretrained_cfg`). `tags`:
    {other tag: {"size": ..., "crop": ...}}, where another tag's checkpoint is
    evaluated otherwise than the default tag's (keys as the arguments here; a
    tag absent from it uses the default tag's pipeline).
    """
    return {
        "build": build,
        "head": head,
        "tag": tag,
        "url": url,
        "input_size": (size, size, 3),
        "interpolation": interpolation,
        "crop_pct": crop,
        "mean": tuple(mean),
        "std": tuple(std),
        "tags": {tag: _pipeline(**overrides) for tag, overrides in (tags or {}).items()},
    }


def _pipeline(size=None, crop=None, interpolation=None):
    """The `timm_config` fields that one tag's checkpoint sets differently."""
    fields = {
        "input_size": None if size is None else (size, size, 3),
        "crop_pct": crop,
        "interpolation": interpolation,
    }
    return {k: v for k, v in fields.items() if v is not None}
