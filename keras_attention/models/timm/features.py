"""features_only models: timm's feature maps as a functional model's outputs.

Each output goes through a `FeatureMap` layer (an identity) that records
timm's `feature_info` entry of the map, so that `feature_info(model)` and
`pyramid_outputs(model)` work on a reloaded `.keras` file as on a fresh model.
"""

import math

import keras

OUTPUT_STRIDES = (8, 16, 32)


@keras.saving.register_keras_serializable(package="keras_attention")
class FeatureMap(keras.layers.Layer):
    """Passes a feature map through and records timm's `feature_info` of it.

    Args:
        reduction: the map's stride relative to the input (timm's
            `reduction`; dilated stages keep the output stride).
        module: timm's module path that produces the map.
        level: log2 of the reduction the map has without dilation: the
            keras-hub pyramid level ("P<level>", unique in a model).

    Example:

    >>> FeatureMap(reduction=8, module="layer2", level=3, name="P3")  # doctest: +SKIP
    """

    def __init__(self, reduction, module, level, **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)
        self.module = str(module)
        self.level = int(level)

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "module": self.module,
            "level": self.level,
        }


def check_features(features_only, out_indices, output_stride):
    """ValueError for a bad `out_indices` or `output_stride` (named in the message)."""
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(
            f"`output_stride` must be one of {OUTPUT_STRIDES}. Received: "
            f"output_stride={output_stride!r}"
        )
    if out_indices is None:
        return
    if not features_only:
        raise ValueError(
            "`out_indices` needs features_only=True. Received: "
            f"out_indices={out_indices!r}, features_only={features_only!r}"
        )
    if (
        not isinstance(out_indices, (list, tuple))
        or not out_indices
        or any(isinstance(i, bool) or not isinstance(i, int) for i in out_indices)
    ):
        raise ValueError(
            "`out_indices` must be a non-empty list or tuple of ints (indices into "
            f"timm's feature_info). Received: out_indices={out_indices!r}"
        )


def dilated_stages(strides, output_stride, net_stride):
    """timm's byobnet rule for `output_stride`: each stage's stride, dilations and reduction.

    `strides`: each stage's stride; `net_stride`: the stem's reduction. Once
    the reduction reaches `output_stride`, a strided stage runs unstrided
    and multiplies the dilation by its stride instead; its first block's 3x3
    keeps the previous dilation (1 for dilations 1 and 2, else 2).

    Returns:
        [(stride, first block's dilation, dilation, reduction)] per stage.
    """
    stages, dilation = [], 1
    for stride in strides:
        if net_stride >= output_stride and stride > 1:
            dilation, stride = dilation * stride, 1
        net_stride *= stride
        stages.append((stride, 1 if dilation in (1, 2) else 2, dilation, net_stride))
    return stages


def features_model(inputs, features, options):
    """The model of the maps `options.out_indices` picks from `features`.

    `features`: [(tensor, module, reduction, undilated reduction)] in timm's
    `feature_info` order.
    """
    indices = options.out_indices
    indices = tuple(range(len(features))) if indices is None else tuple(indices)
    count = len(features)
    picked = []
    for index in indices:
        if not -count <= index < count:
            raise ValueError(
                f"`out_indices` must index the {count} feature maps of {options.name!r} "
                f"(-{count} to {count - 1}). Received: out_indices={options.out_indices!r}"
            )
        picked.append(index % count)
    if len(set(picked)) != len(picked):
        raise ValueError(f"`out_indices` repeats a map. Received: out_indices={indices!r}")
    outputs = []
    for index in picked:
        tensor, module, reduction, undilated = features[index]
        level = int(math.log2(undilated))
        layer = FeatureMap(reduction, module, level, name=f"P{level}")
        outputs.append(layer(tensor))
    return keras.Model(inputs, outputs, name=options.name)


def _feature_layers(model):
    layers = [model.get_layer(name) for name in model.output_names]
    if not all(isinstance(layer, FeatureMap) for layer in layers):
        raise ValueError(
            f"The model {model.name!r} is not a from_timm(..., features_only=True) model."
        )
    return layers


def feature_info(model):
    """timm's `feature_info` of a features_only model's outputs, in their order.

    Returns a list of dicts with "num_chs", "reduction" and "module" (timm's
    keys) and "level" (the "P<level>" key of `pyramid_outputs`). Works on a
    reloaded `.keras` file too.
    """
    axis = 1 if keras.config.image_data_format() == "channels_first" else -1
    return [
        {
            "num_chs": int(layer.output.shape[axis]),
            "reduction": layer.reduction,
            "module": layer.module,
            "level": layer.level,
        }
        for layer in _feature_layers(model)
    ]


def pyramid_outputs(model):
    """{"P<level>": output tensor} of a features_only model, keras-hub's `pyramid_outputs`.

    The level is log2 of the map's reduction without dilation (P2 at 1/4 ...
    P5 at 1/32), so the keys stay distinct when `output_stride` dilates the
    last stages; `feature_info` has the actual reductions. The tensors are
    the functional model's symbolic outputs: `keras.Model(model.inputs,
    pyramid_outputs(model)["P4"])` builds a model of one level.
    """
    return {layer.name: layer.output for layer in _feature_layers(model)}
