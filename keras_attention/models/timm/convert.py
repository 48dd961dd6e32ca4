"""from_timm: timm's ImageNet networks in Keras, with timm's weights.

`from_timm("seresnet50")` builds the timm architecture with its family's
builder (layers named after timm's module paths, "." -> "_") and copies every
tensor of the checkpoint into exactly one Keras variable, converting
PyTorch's layouts (OIHW kernels, (out, in) matrices) to Keras's. A
`.safetensors` file loads without torch; `.pth`/`.bin` files need torch.
"""

import numpy as np

from keras_attention.models.timm import catalogue
from keras_attention.models.timm import checkpoint as checkpoint_io
from keras_attention.models.timm.assign import assign_state_dict
from keras_attention.models.timm.features import check_features
from keras_attention.models.timm.input_range import check_input_range
from keras_attention.models.timm.options import BuildOptions


def from_timm(
    name,
    checkpoint=None,
    pretrained=True,
    include_top=True,
    classes=None,
    input_shape=(None, None, 3),
    pooling=None,
    include_preprocessing=True,
    input_range=(0, 1),
    features_only=False,
    out_indices=None,
    output_stride=32,
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
        include_preprocessing: True: the model takes RGB images in
            `input_range`, checks each batch (an `InputRange` layer named
            "input_range_0_to_1" or as the range says) and normalises it with
            the checkpoint's mean and std (a `Rescaling` layer named
            "preprocessing"). False: it takes normalised images and checks
            nothing. Resize and crop as `timm_config(name)` says.
        features_only: True builds timm's `features_only` network: a
            functional model whose outputs are the feature maps that
            `out_indices` picks (a list, in that order), each through a
            `FeatureMap` layer named "P<level>" (log2 of its undilated
            reduction); `feature_info(model)` gives timm's channels and
            reductions, `pyramid_outputs(model)` the keras-hub dict. The
            checkpoint's classifier is skipped; everything else must load.
            Every family but VOLO (a ValueError). The first map is the
            stem's stride-2 one; ByobNet's and RegNetZ's last is final_conv's.
        out_indices: None (every map: the stride-2 stem, then each stage) or a
            list of indices into timm's `feature_info` (negative from the end).
        output_stride: 32, or 16 or 8: the last stages run dilated at that
            stride instead of striding further, as timm's `output_stride`.
            A ValueError for ResNeSt (not built here), the legacy SENet,
            VoVNet and VOLO (timm has none) and the fixed-size `*_256`
            self-attention nets (position embeddings sized for stride 32).
        input_range: (low, high) of the RGB values the model takes:
            `(0, 1)` (the default, what `timm_config`'s mean and std refer
            to) or `(0, 255)` (what `keras.utils.image_dataset_from_directory`
            and `keras.applications` models take), or any other pair. A batch
            far outside it (below `low - (high - low)` or above
            `high + (high - low)`, e.g. 0-255 images given to a [0, 1] model)
            raises a `ValueError` in eager calls and gives NaN outputs inside a
            compiled step (`fit`, `predict`, `tf.data`), rather than quietly
            wrong ones.

    Returns:
        A functional `keras.Model` named after `name`.

    Raises:
        ValueError: an unknown name (the message lists the supported ones), a
            bad `input_range` (or one given with `include_preprocessing=False`), or
            a checkpoint that does not fill the model one to one (the message
            lists the unmatched, missing and wrong-shape names).

    Example:

    >>> model = from_timm("ecaresnet50d", classes=5)  # doctest: +SKIP
    >>> model = from_timm("ecaresnet50d", input_range=(0, 255))  # doctest: +SKIP
    """
    base, _ = catalogue.split_name(name)
    input_range = check_input_range(input_range)
    check_features(features_only, out_indices, output_stride)
    if not include_preprocessing and input_range != (0.0, 1.0):
        raise ValueError(
            "`input_range` applies to the model's own preprocessing: with "
            "include_preprocessing=False the model takes normalised images. "
            f"Received: input_range={input_range!r}"
        )
    entry = catalogue.MODELS[base]
    state = None
    if pretrained:
        if checkpoint is None:
            state = checkpoint_io.download(catalogue.timm_config(name))
        else:
            state = checkpoint_io.load_checkpoint(checkpoint)
    checkpoint_classes = 1000
    # The classifier's module path, or a tuple of them (VOLO's head and aux_head).
    heads = entry["head"] if isinstance(entry["head"], tuple) else (entry["head"],)
    head = heads[0]
    if state is not None and f"{head}.weight" in state:
        checkpoint_classes = int(np.shape(state[f"{head}.weight"])[0])
    classes = checkpoint_classes if classes is None else classes
    skip = ()
    include_top = include_top and not features_only
    if state is not None and (not include_top or classes != checkpoint_classes):
        skip = tuple(f"{h}." for h in heads)
        if include_top:
            print(
                f"from_timm: new {classes}-class classifier in place of the checkpoint's "
                f"{checkpoint_classes} classes (randomly initialised, for fine-tuning)."
            )
    options = BuildOptions(
        name=base,
        input_shape=input_shape,
        classes=classes,
        include_top=include_top,
        pooling=pooling,
        head_name=head.replace(".", "_"),
        preprocessing=(entry["mean"], entry["std"]) if include_preprocessing else None,
        input_range=input_range,
        features_only=bool(features_only),
        out_indices=None if out_indices is None else tuple(out_indices),
        output_stride=output_stride,
    )
    model = entry["build"](options)
    if state is not None:
        assign_state_dict(model, state, catalogue.SUBLAYERS, skip)
    return model
