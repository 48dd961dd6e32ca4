"""Writes the saved-file compatibility set: old `.keras` files that every later version must load.

For every layer of the layer contract (each of `keras_attention.available()`),
the volume form of each layer that has one (`<name>-3d`, on a clip), and one
model of each builder family, this script saves a model with random
weights to `tests/compat/<version>/<name>.keras.xz` and its input and output
to `<name>.npz`; `tests/test_compat.py` loads every file of every version
folder in safe mode and checks the stored output. The files of a released
version are the point: the script never overwrites one unless `--overwrite`
is given, and then only for the names given with `--only`.

    python tests/compat/make_files.py              # files missing from this version's folder
    python tests/compat/make_files.py --list       # the names it knows
    python tests/compat/make_files.py --only cbam --overwrite

Each `.keras` file is exactly what `model.save` wrote, compressed with xz:
Keras stores weights uncompressed, and a ResNet-18 alone is 45 MB. So that
the large models compress too, each variable is filled with a random block
of at most 257 values repeated (`tiled_random`): every weight still moves the
output, and no initial value (a zero `gamma`, a zero-initialised BN) survives,
so a file whose weights did not load gives different outputs. The script
checks that for each file before it keeps it.

Run it on TensorFlow, float32, channels_last (the defaults). From a git worktree
other than the one the venv installed, prefix `PYTHONPATH=.` so that the
worktree's `keras_attention` is the one saved.
"""

import argparse
import io
import lzma
import os
import pathlib
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the layer contract's cases

import keras_attention
from keras_attention import models

PERIOD = 257


def tiled_random(model, seed=0):
    """Fills every variable with a random block of `PERIOD` values, repeated.

    Kernels are scaled by 1/sqrt(fan-in) so deep models stay finite;
    variances stay positive.
    """
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        size = int(np.prod(shape))
        low, high = (0.5, 1.5) if "variance" in weight.path else (-0.5, 0.5)
        block = rng.uniform(low, high, min(size, PERIOD))
        value = np.resize(block, size).reshape(shape)
        if len(shape) >= 2 and "variance" not in weight.path:
            value *= np.sqrt(3.0 / np.prod(shape[:-1]))
        weight.assign(value.astype(weight.dtype))


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _uniform(shape, seed):
    return np.random.default_rng(seed).uniform(size=shape).astype("float32")


def _layer_entries():
    """name -> (build, inputs) for each case of the layer contract, and AttentionGate."""
    import test_attention_gate_contract as gate
    from test_layer_contract import CASES
    from test_layer_contract import VOLUME_CASES

    short_names = {cls: name for name, cls in keras_attention.registry._LAYERS.items()}
    entries = {}
    for case in CASES + VOLUME_CASES:
        name = short_names[case.cls] + ("-3d" if case.rank == 3 else "")
        if name in entries:  # a second case of one class: name it by its arguments
            name += "".join(f"-{key}-{value}" for key, value in case.kwargs.items())

        def build(case=case):
            inputs = keras.Input((None,) * case.rank + (case.channels,))
            return keras.Model(inputs, case.cls(**case.kwargs)(inputs))

        spatial = (6, 10) if case.rank == 2 else (4, 6, 5)  # a clip: depth 4
        entries[name] = (build, [_normal((2, *spatial, case.channels), seed=0)])

    def build_gate(rank=2):
        inputs = [
            keras.Input((None,) * rank + (gate.CHANNELS,)),
            keras.Input((None,) * rank + (gate.GATING,)),
        ]
        return keras.Model(inputs, keras_attention.layers.AttentionGate(**gate.KWARGS)(inputs))

    entries["attention_gate"] = (
        build_gate,
        [_normal((2, 6, 10, gate.CHANNELS), 0), _normal((2, 3, 5, gate.GATING), 1)],
    )
    entries["attention_gate-3d"] = (
        lambda: build_gate(rank=3),
        [_normal((2, 4, 6, 10, gate.CHANNELS), 0), _normal((2, 2, 3, 5, gate.GATING), 1)],
    )
    return entries


def _model_entries():
    """name -> (build, inputs): one small model of each builder family."""
    images = [_uniform((2, 32, 32, 3), seed=0)]
    return {
        "model-attention_cnn": (
            lambda: models.AttentionCNN("cbam", widths=(8, 16, 32)),
            [_uniform((2, 28, 28, 1), seed=0)],
        ),
        "model-resnet18_se": (
            lambda: models.ResNet18("se", input_shape=(32, 32, 3), classes=10),
            images,
        ),
        "model-residual_attention_net56": (
            lambda: models.ResidualAttentionNet56((32, 32, 3), classes=10, small_input=True),
            images,
        ),
        "model-spatial_transformer_classifier": (
            models.SpatialTransformerClassifier,
            [_uniform((2, 28, 28, 1), seed=0)],
        ),
        "model-danet": (lambda: models.DANet(3, input_shape=(32, 32, 3)), images),
        "model-ccnet": (lambda: models.CCNet(3, input_shape=(32, 32, 3)), images),
        "model-timm_skresnet18": (
            lambda: models.from_timm("skresnet18", pretrained=False, input_shape=(32, 32, 3)),
            images,
        ),
    }


def entries():
    return {**_layer_entries(), **_model_entries()}


def _predict(model, inputs):
    return np.asarray(model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0))


def write(name, build, inputs, folder):
    """Saves one model with tiled random weights, its inputs and outputs; checks them."""
    keras.utils.set_random_seed(0)
    model = build()
    tiled_random(model)
    outputs = _predict(model, inputs)
    if not np.all(np.isfinite(outputs)) or np.std(outputs) < 1e-3:
        raise RuntimeError(f"{name}: outputs are not finite or nearly constant")
    fresh = _predict(build(), inputs)  # what an unloaded file would give
    if model.weights and np.allclose(
        fresh, outputs, rtol=1e-2, atol=1e-2 * np.max(np.abs(outputs))
    ):
        raise RuntimeError(f"{name}: the random weights do not change the outputs")
    raw = folder / f"{name}.keras"
    model.save(raw)
    (folder / f"{name}.keras.xz").write_bytes(lzma.compress(raw.read_bytes(), preset=9))
    raw.unlink()
    arrays = {f"input_{i}": x for i, x in enumerate(inputs)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, output=outputs, **arrays)
    (folder / f"{name}.npz").write_bytes(buffer.getvalue())
    keras.backend.clear_session()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", help="names to write (default: all missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files of --only")
    parser.add_argument("--list", action="store_true", help="print the names and exit")
    args = parser.parse_args()
    known = entries()
    if args.list:
        print("\n".join(known))
        return
    if args.overwrite and not args.only:
        parser.error("--overwrite needs --only: old files are the point of the set")
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        parser.error(f"unknown names {unknown}; see --list")
    folder = HERE / keras_attention.__version__
    folder.mkdir(exist_ok=True)
    for name in args.only or known:
        exists = (folder / f"{name}.keras.xz").exists()
        if exists and not args.overwrite:
            print(f"{name}: kept (exists)")
            continue
        write(name, *known[name], folder)
        print(f"{name}: written")


if __name__ == "__main__":
    main()
