"""Every supported timm name, gathered from the family modules, and its checkpoint's pipeline.

A family module (one per timm model file: `resnet`, ...) defines `MODELS`
({timm name: `spec(...)`}) and `SUBLAYERS` (how timm's submodules map onto
the sublayers of our composite layers). A new family joins by one line in
`FAMILIES`.
"""

from keras_attention.models.timm import byobnet
from keras_attention.models.timm import regnet
from keras_attention.models.timm import regnetz
from keras_attention.models.timm import resnet
from keras_attention.models.timm import volo
from keras_attention.models.timm import vovnet

FAMILIES = (resnet, byobnet, regnet, regnetz, volo, vovnet)

MODELS = {name: entry for family in FAMILIES for name, entry in family.MODELS.items()}
SUBLAYERS = {cls: mapping for family in FAMILIES for cls, mapping in family.SUBLAYERS.items()}


def timm_names():
    """The timm model names that `from_timm` supports, sorted."""
    return sorted(MODELS)


def split_name(name):
    """(timm name, pretrained tag) of `"name"` or `"name.tag"`; ValueError if unknown."""
    base, _, tag = name.partition(".") if isinstance(name, str) else (name, "", "")
    if base not in MODELS:
        raise ValueError(
            f"Unknown timm model `name`: {name!r}. Supported: {', '.join(timm_names())}"
        )
    return base, tag or MODELS[base]["tag"]


def timm_config(name):
    """The checkpoint's input pipeline: what timm evaluates its top-1 with.

    Returns a dict with "name", "tag", "hub_id" (or "url" for the Caffe
    weights), "input_size" (H, W, C), "interpolation", "crop_pct" (resize to
    size / crop_pct, then centre-crop to size), "mean" and "std" (of RGB
    values in [0, 1]): the tag's own where its entry's `tags` declares them.
    """
    base, tag = split_name(name)
    entry = MODELS[base]
    config = {k: v for k, v in entry.items() if k not in ("build", "head", "tags")}
    config.update(entry["tags"].get(tag, {}))
    config.update(
        name=base,
        tag=tag,
        hub_id=None if entry["url"] else f"timm/{base}.{tag}",
    )
    return config
