"""TensorFlow's oneDNN kernels on the AVX2 CPUs where TensorFlow leaves them off.

On Linux x86, TensorFlow 2.21 turns oneDNN on by default only for CPUs with
`avx512_vnni`, `avx512_bf16`, `avx_vnni` or AMX (`DefaultOneDnnPolicy` in
tensorflow/core/util/port.cc); any other CPU runs Eigen's kernels unless
`TF_ENABLE_ONEDNN_OPTS=1`. On an AVX2 CPU oneDNN's AVX2 kernels were faster:
an SE-ResNet-50 training step took 0.37x the time and its inference 0.84x,
with the same loss (oneDNN capped at AVX2 on an AVX-512 CPU, an emulation;
docs/benchmarks.md, "oneDNN on an AVX2 CPU, forced").

TensorFlow reads the variable once, at its import, and Keras imports
TensorFlow at its own import. So every example script starts with (the
modules they share, distribute.py and run_folder.py, without the sys.path line)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tf_onednn

    os.environ.update(tf_onednn.environment())  # before Keras imports TensorFlow

    import keras

An explicit call rather than a side effect of the import: the example shows
what it changes, and the tests import this module without changing their
environment. A user's `TF_ENABLE_ONEDNN_OPTS` (0 or 1) always wins.

No Keras here, nor `import keras_attention` (its `__init__` imports Keras):
the flags come from the package's keras-free `cpu.py` in this checkout, run
on its own.
"""

import os
import runpy
import sys

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# Run on its own: `import keras_attention.cpu` would run the package's `__init__` first.
CPU_PY = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_attention", "cpu.py"
)
# The flags for which TensorFlow turns oneDNN on by itself (`DefaultOneDnnPolicy`).
TENSORFLOW_ONEDNN_FLAGS = (
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
NOTE = (
    f"oneDNN turned on ({VARIABLE}=1): an AVX2 CPU without avx512_vnni, avx512_bf16, "
    f"avx_vnni or AMX, where TensorFlow leaves it off; {VARIABLE}=0 keeps it off."
)


def forcing_pays(flags):
    """Whether TensorFlow would leave oneDNN off on a CPU with these flags, and the
    CPU has the AVX2 that oneDNN's faster kernels need."""
    return "avx2" in flags and not any(flag in flags for flag in TENSORFLOW_ONEDNN_FLAGS)


def settings(flags, environ):
    """The variables that turn oneDNN on where that pays: `{VARIABLE: "1"}` or `{}`.

    Args:
        flags: the CPU's feature flags (a set of /proc/cpuinfo names).
        environ: the environment. An explicit `TF_ENABLE_ONEDNN_OPTS` is left as
            it is, and so is everything when `KERAS_BACKEND` names another
            backend (unset or empty: TensorFlow, Keras's default; a backend
            named only in keras.json is not read here, and TensorFlow's switch
            is harmless there).
    """
    if VARIABLE in environ or (environ.get("KERAS_BACKEND") or "tensorflow") != "tensorflow":
        return {}
    return {VARIABLE: "1"} if forcing_pays(flags) else {}


def environment(flags=None):
    """`settings` for this machine, saying in one line (stderr) when it turns oneDNN on.

    Args:
        flags: the CPU's feature flags; None reads this machine's.

    Returns:
        The variables to add to `os.environ` before Keras is imported; `{}` once
        TensorFlow is imported, as it has read the variable already.
    """
    if "tensorflow" in sys.modules:
        return {}
    if flags is None:
        flags = runpy.run_path(CPU_PY)["cpu_flags"]()
    update = settings(flags, os.environ)
    if update:
        print(NOTE, file=sys.stderr)
    return update
