"""timm's ImageNet checkpoints in this package's models: name -> builder, tensor -> variable.

`from_timm("seresnet50")` builds the timm architecture with `timm_layouts`
(layers named after timm's module paths, "." -> "_") and copies every tensor of
the checkpoint into exactly one Keras variable, converting PyTorch's layouts
(OIHW kernels, (out, in) matrices) to Keras's. A `.safetensors` file loads
without torch; `.pth`/`.bin` files need torch.
"""

import collections
import os

import keras
import numpy as np

from keras_attention import layers
from keras_attention.models.timm_layouts import Layout
from keras_attention.models.timm_layouts import build

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_URL = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/"


def _entry(layout, tag, size=224, crop=0.875, interpolation="bicubic", head="fc", url=None):
    return {
        "layout": layout,
        "head": head,
        "tag": tag,
        "url": url,
        "input_size": (size, size, 3),
        "interpolation": interpolation,
        "crop_pct": crop,
        "mean": _IMAGENET_MEAN,
        "std": _IMAGENET_STD,
    }


_R18, _R34, _R50, _R101 = (2, 2, 2, 2), (3, 4, 6, 3), (3, 4, 6, 3), (3, 4, 23, 3)
_D = {"stem": "deep", "stem_width": 32, "avg_down": True}
_T = {"stem": "deep_tiered", "stem_width": 32, "avg_down": True}

# timm's default pretrained tag and its preprocessing, for each supported name.
_MODELS = {
    "resnet18": _entry(Layout(_R18, "basic"), "a1_in1k", crop=0.95),
    "resnet34": _entry(Layout(_R34, "basic"), "a1_in1k", crop=0.95),
    "resnet50": _entry(Layout(_R50), "a1_in1k", crop=0.95),
    "resnet101": _entry(Layout(_R101), "a1h_in1k", crop=0.95),
    "resnet50d": _entry(Layout(_R50, **_D), "ra2_in1k"),
    "seresnet50": _entry(Layout(_R50, attention="se"), "a1_in1k", crop=0.95),
    "seresnet152d": _entry(
        Layout((3, 8, 36, 3), attention="se", **_D), "ra2_in1k", size=256, crop=0.95
    ),
    "legacy_seresnet50": _entry(
        Layout(_R50, "legacy", stem="legacy", attention="legacy_se"),
        "in1k",
        interpolation="bilinear",
        head="last_linear",
        url=_CAFFE_URL + "se_resnet50-ce0d4300.pth",
    ),
    "seresnext50_32x4d": _entry(
        Layout(_R50, cardinality=32, base_width=4, attention="se"), "racm_in1k"
    ),
    "ecaresnet26t": _entry(Layout(_R18, attention="eca", **_T), "ra2_in1k", size=256),
    "ecaresnet50d": _entry(Layout(_R50, attention="eca", **_D), "miil_in1k"),
    "ecaresnet50t": _entry(Layout(_R50, attention="eca", **_T), "ra2_in1k", size=256),
    "ecaresnet101d": _entry(Layout(_R101, attention="eca", **_D), "miil_in1k"),
    "ecaresnetlight": _entry(Layout((1, 1, 11, 3), attention="eca", avg_down=True), "miil_in1k"),
    "gcresnet50t": _entry(
        Layout(_R50, "byob", stem="tiered", attention="gc"),
        "ra2_in1k",
        size=256,
        crop=0.9,
        head="head.fc",
    ),
    "resnest14d": _entry(
        Layout((1, 1, 1, 1), "resnest", radix=2, **_D), "gluon_in1k", interpolation="bilinear"
    ),
    "resnest26d": _entry(
        Layout(_R18, "resnest", radix=2, **_D), "gluon_in1k", interpolation="bilinear"
    ),
    "resnest50d": _entry(Layout(_R50, "resnest", radix=2, **_D), "in1k", interpolation="bilinear"),
    "skresnet18": _entry(Layout(_R18, "sk_basic"), "ra_in1k"),
    "skresnet34": _entry(Layout(_R34, "sk_basic"), "ra_in1k"),
}

# Our composite layers: timm's submodule path -> our sublayer attribute (or a
# function of the layer returning that mapping).
_SUBLAYERS = {
    layers.SqueezeExcitation: {"fc1": "reduce", "fc2": "expand"},
    layers.EfficientChannelAttention: {"conv": "conv"},
    layers.GlobalContext: {
        "conv_attn": "conv_attn",
        "mlp_add.fc1": "add_fc1",
        "mlp_add.norm": "add_norm",
        "mlp_add.fc2": "add_fc2",
        "mlp_scale.fc1": "mul_fc1",
        "mlp_scale.norm": "mul_norm",
        "mlp_scale.fc2": "mul_fc2",
    },
    layers.SplitAttention: {name: name for name in ("conv", "bn0", "fc1", "bn1", "fc2")},
    # One conv + BN per branch: list items are "attribute.index".
    layers.SelectiveKernel: lambda layer: {
        **{f"paths.{i}.conv": f"branch_convs.{i}" for i in range(len(layer.dilations))},
        **{f"paths.{i}.bn": f"branch_norms.{i}" for i in range(len(layer.dilations))},
        "attn.fc_reduce": "fuse_dense",
        "attn.bn": "fuse_bn",
        "attn.fc_select": "select",
    },
}
_SKIPPED_BUFFERS = ("num_batches_tracked",)


def timm_names():
    """The timm model names that `from_timm` supports, sorted."""
    return sorted(_MODELS)


def _split_name(name):
    base, _, tag = name.partition(".") if isinstance(name, str) else (name, "", "")
    if base not in _MODELS:
        raise ValueError(
            f"Unknown timm model `name`: {name!r}. Supported: {', '.join(timm_names())}"
        )
    return base, tag or _MODELS[base]["tag"]


def timm_config(name):
    """The checkpoint's input pipeline: what timm evaluates its top-1 with.

    Returns a dict with "name", "tag", "hub_id" (or "url" for the Caffe
    weights), "input_size" (H, W, C), "interpolation", "crop_pct" (resize to
    size / crop_pct, then centre-crop to size), "mean" and "std" (of RGB
    values in [0, 1]).
    """
    base, tag = _split_name(name)
    entry = _MODELS[base]
    config = {k: v for k, v in entry.items() if k not in ("layout", "head")}
    config.update(
        name=base,
        tag=tag,
        hub_id=None if entry["url"] else f"timm/{base}.{tag}",
    )
    return config


# --- checkpoints -------------------------------------------------------------


def load_checkpoint(checkpoint):
    """A state dict as {name: numpy array}, from a mapping or a file.

    `.safetensors` files load with `safetensors.numpy` (no torch); `.pth`,
    `.pt` and `.bin` files need torch.
    """
    if isinstance(checkpoint, collections.abc.Mapping):
        return {k: _to_numpy(v) for k, v in checkpoint.items()}
    if not isinstance(checkpoint, (str, os.PathLike)) or not os.path.isfile(checkpoint):
        raise ValueError(
            "`checkpoint` must be None, a path to a .safetensors/.pth/.bin file, or a "
            f"mapping of state-dict names to arrays. Received: checkpoint={checkpoint!r}"
        )
    path = os.fspath(checkpoint)
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    import torch  # only for PyTorch's pickled checkpoints

    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    return {k: v.detach().float().numpy() for k, v in state.items()}


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().float().numpy()
    return np.asarray(value)


def _download(name):
    config = timm_config(name)
    if config["url"]:
        path = keras.utils.get_file(origin=config["url"], cache_subdir="timm")
        return load_checkpoint(path)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as error:
        raise ImportError(
            "Downloading timm's weights needs huggingface_hub and safetensors: "
            "pip install keras_attention[pretrained]"
        ) from error
    return load_checkpoint(hf_hub_download(config["hub_id"], "model.safetensors"))


# --- tensor -> variable ------------------------------------------------------


def _conv_kernel(value):
    return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _dense_kernel(value):
    return value.reshape(value.shape[0], -1).T  # (out, in[, 1, 1]) -> (in, out)


def _targets(layer, prefix):
    """[(variable, checkpoint key, converter)] for every variable of `layer`."""
    if isinstance(layer, keras.layers.BatchNormalization):
        names = ("weight", "bias", "running_mean", "running_var")
        variables = (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
        return [(v, prefix + n, np.asarray) for v, n in zip(variables, names, strict=True)]
    if isinstance(layer, keras.layers.LayerNormalization):
        return [
            (layer.gamma, prefix + "weight", np.asarray),
            (layer.beta, prefix + "bias", np.asarray),
        ]
    if isinstance(layer, keras.layers.Conv1D):  # ECA: (1, 1, k) -> (k, 1, 1)
        return [(layer.kernel, prefix + "weight", lambda v: v.transpose(2, 1, 0))]
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        kernel = _conv_kernel if isinstance(layer, keras.layers.Conv2D) else _dense_kernel
        pairs = [(layer.kernel, prefix + "weight", kernel)]
        if layer.use_bias:
            pairs.append((layer.bias, prefix + "bias", np.asarray))
        return pairs
    for cls, sublayers in _SUBLAYERS.items():
        if isinstance(layer, cls):
            sublayers = sublayers(layer) if callable(sublayers) else sublayers
            pairs = []
            for sub, attribute in sublayers.items():
                sublayer = _sublayer(layer, attribute)
                if sublayer is not None:
                    pairs += _targets(sublayer, f"{prefix}{sub}.")
            return pairs
    raise ValueError(f"No checkpoint mapping for layer {layer.name!r} ({type(layer).__name__})")


def _sublayer(layer, attribute):
    """`layer.attribute`, or item i of the list `layer.name` for "name.i"; None if absent."""
    name, _, index = attribute.partition(".")
    value = getattr(layer, name, None)
    return value[int(index)] if value is not None and index else value


def assign_state_dict(model, state, skip_prefixes=()):
    """Copies `state` into `model`'s variables; raises ValueError unless it is a bijection.

    Every tensor (BatchNorm's `num_batches_tracked` aside) must land in one
    variable and every variable must receive one tensor of its shape; the
    error lists the unmatched, missing and wrong-shape names. Keys starting
    with one of `skip_prefixes` (a replaced classifier) are ignored.
    """
    expected = {}  # checkpoint key -> (variable, converter)
    for layer in model.layers:
        if not layer.weights or layer.name == "preprocessing":
            continue
        if any(layer.name == p.rstrip(".").replace(".", "_") for p in skip_prefixes):
            continue
        prefix = layer.name  # layer names are timm's module paths, "." -> "_"
        for variable, key, convert in _targets(layer, ""):
            expected[(prefix, key)] = (variable, convert)
    by_layer = {name for name, _ in expected}
    unmatched, wrong_shape, assigned = [], [], set()
    for key, value in state.items():
        if key.endswith(_SKIPPED_BUFFERS) or key.startswith(tuple(skip_prefixes)):
            continue
        target = _match(key, by_layer)
        if target is None or target not in expected:
            unmatched.append(key)
            continue
        variable, convert = expected[target]
        array = convert(np.asarray(value, dtype="float32"))
        if tuple(array.shape) != tuple(variable.shape):
            wrong_shape.append(
                f"{key} {tuple(np.shape(value))} -> {variable.path} {variable.shape}"
            )
            continue
        variable.assign(array)
        assigned.add(target)
    missing = [f"{name}: {key}" for name, key in expected if (name, key) not in assigned]
    if unmatched or missing or wrong_shape:
        raise ValueError(
            "The checkpoint does not match the model "
            f"{model.name!r} one to one.\n  unmatched checkpoint tensors: {unmatched}"
            f"\n  variables with no tensor: {missing}\n  wrong shapes: {wrong_shape}"
        )


def _match(key, layer_names):
    """(layer name, rest of key) for the longest module-path prefix naming a layer."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        name = "_".join(parts[:i])
        if name in layer_names:
            return name, ".".join(parts[i:])
    return None


# --- the public entry point --------------------------------------------------


def from_timm(
    name,
    checkpoint=None,
    pretrained=True,
    include_top=True,
    classes=None,
    input_shape=(None, None, 3),
    pooling=None,
    include_preprocessing=True,
):
    """Builds timm's model `name` in Keras and loads timm's ImageNet weights into it.

    The model is made of this package's registered layers and standard Keras
    layers only: it saves to `.keras` and reloads in safe mode. With the same
    weights its logits equal timm's (float32, eval mode) to ~1e-5 relative.

    Args:
        name: a name from `timm_names()`, optionally with its pretrained tag
            (`"seresnet50"`, `"seresnet50.ra2_in1k"`); the tag picks the
            weights on the model hub (the default is timm's).
        checkpoint: None to download timm's weights with `huggingface_hub`
            (`pip install keras_attention[pretrained]`); a path to a
            `.safetensors` file (no torch needed) or a `.pth`/`.bin` file
            (needs torch); or a mapping of state-dict names to arrays.
        pretrained: False builds the architecture with Keras's initialisation
            and loads nothing. Defaults to True.
        include_top: whether to end with global average pooling and the
            float32 classifier returning logits. Defaults to True.
        classes: None keeps the checkpoint's classifier (1000 ImageNet
            classes); another number replaces it with a new, randomly
            initialised one for fine-tuning (a message says so).
        input_shape: the image shape, channels last or first per the global
            data format; height and width may be None. Defaults to
            `(None, None, 3)`.
        pooling: None, "avg" or "max": the pooling of a headless model.
        include_preprocessing: True: the model takes RGB images in [0, 1] and
            its first layer (a Keras `Normalization` named "preprocessing")
            applies the checkpoint's mean and std. False: it takes normalised
            images. Resize and crop as `timm_config(name)` says.

    Returns:
        A functional `keras.Model` named after `name`.

    Raises:
        ValueError: an unknown name (the message lists the supported ones), or
            a checkpoint that does not fill the model one to one (the message
            lists the unmatched, missing and wrong-shape names).

    Example:

    >>> model = from_timm("ecaresnet50d", classes=5)  # doctest: +SKIP
    """
    base, _ = _split_name(name)
    entry = _MODELS[base]
    state = None
    if pretrained:
        state = load_checkpoint(checkpoint) if checkpoint is not None else _download(name)
    checkpoint_classes = 1000
    head = entry["head"]
    if state is not None and f"{head}.weight" in state:
        checkpoint_classes = int(np.shape(state[f"{head}.weight"])[0])
    classes = checkpoint_classes if classes is None else classes
    skip = ()
    if state is not None and (not include_top or classes != checkpoint_classes):
        skip = (f"{head}.",)
        if include_top:
            print(
                f"from_timm: new {classes}-class classifier in place of the checkpoint's "
                f"{checkpoint_classes} classes (randomly initialised, for fine-tuning)."
            )
    model = build(
        entry["layout"],
        name=base,
        input_shape=input_shape,
        classes=classes,
        include_top=include_top,
        pooling=pooling,
        head_name=head.replace(".", "_"),
        preprocessing=(entry["mean"], entry["std"]) if include_preprocessing else None,
    )
    if state is not None:
        assign_state_dict(model, state, skip)
    return model
