"""Checkpoint tensors into Keras variables, one to one, converting PyTorch's layouts."""

import keras
import numpy as np

_SKIPPED_BUFFERS = ("num_batches_tracked",)


def _conv_kernel(value):
    if value.ndim == 5 and value.shape[-1] == 1:  # a Conv3d over (H, W, depth 1): LambdaLayer's
        value = value[..., 0]
    return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _dense_kernel(value):
    return value.reshape(value.shape[0], -1).T  # (out, in[, 1, 1]) -> (in, out)


def _targets(layer, prefix, sublayers):
    """[(variable, checkpoint key, converter)] for every variable of `layer`.

    `sublayers`: {our composite layer class: {timm's submodule path: our
    sublayer attribute}, or a function of the layer returning that mapping}.
    An attribute that is a variable takes the tensor at that path itself
    ("" for a parameter that is a whole module path, e.g. timm's `pos_embed`).
    """
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
    for cls, mapping in sublayers.items():
        if isinstance(layer, cls):
            mapping = mapping(layer) if callable(mapping) else mapping
            pairs = []
            for sub, attribute in mapping.items():
                sublayer = _sublayer(layer, attribute)
                if isinstance(sublayer, keras.Variable):
                    pairs.append((sublayer, f"{prefix}{sub}".rstrip("."), np.asarray))
                elif sublayer is not None:
                    pairs += _targets(sublayer, f"{prefix}{sub}.", sublayers)
            return pairs
    raise ValueError(f"No checkpoint mapping for layer {layer.name!r} ({type(layer).__name__})")


def _sublayer(layer, attribute):
    """`layer.attribute`, or item i of the list `layer.name` for "name.i"; None if absent."""
    name, _, index = attribute.partition(".")
    value = getattr(layer, name, None)
    return value[int(index)] if value is not None and index else value


def assign_state_dict(model, state, sublayers, skip_prefixes=()):
    """Copies `state` into `model`'s variables; raises ValueError unless it is a bijection.

    Every tensor (BatchNorm's `num_batches_tracked` aside) must land in one
    variable and every variable must receive one tensor of its shape; the
    error lists the unmatched, missing and wrong-shape names. Keys starting
    with one of `skip_prefixes` (a replaced classifier) are ignored.
    `sublayers` maps our composite layers' sublayers to timm's submodules.
    """
    expected = {}  # checkpoint key -> (variable, converter)
    for layer in model.layers:
        if not layer.weights or layer.name == "preprocessing":
            continue
        if any(layer.name == p.rstrip(".").replace(".", "_") for p in skip_prefixes):
            continue
        prefix = layer.name  # layer names are timm's module paths, "." -> "_"
        for variable, key, convert in _targets(layer, "", sublayers):
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
    """(layer name, rest of key) for the longest module-path prefix naming a layer.

    The whole key may name a layer: a parameter of timm's model itself
    (`pos_embed`, `cls_token`), whose rest is "".
    """
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        name = "_".join(parts[:i])
        if name in layer_names:
            return name, ".".join(parts[i:])
    return None
