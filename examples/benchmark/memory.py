"""Peak memory of the compiled calls, each shape group measured in a fresh process."""

import gc
import json
import os
import pathlib
import statistics
import subprocess
import sys

import keras

import keras_attention

from .calls import compiled_calls
from .calls import make_layer
from .calls import random_input
from .machine import accelerator
from .machine import sync
from .references import import_timm
from .references import timm_calls
from .references import timm_module


class PeakMeter:
    """Peak bytes in use during a `with` block, above what was in use when it began.

    `source` says what is counted: TensorFlow's allocator ("tensorflow allocator", on
    the CPU too: the oneDNN build pools CPU memory and keeps statistics), JAX's or
    PyTorch's device allocator on a GPU, else the process's resident set.
    """

    def __init__(self, framework=None):
        # framework="torch": a timm module, whatever Keras's backend is.
        self.backend = framework or keras.backend.backend()
        if framework == "torch":
            import torch

            self.gpu = torch.cuda.is_available()
        else:
            self.gpu = accelerator() is not None
        self.source = "resident set"
        if self.backend == "tensorflow":
            import tensorflow as tf

            self.tf_device = "GPU:0" if self.gpu else "CPU:0"
            try:  # CPU statistics exist only with the (default) oneDNN allocator
                tf.config.experimental.reset_memory_stats(self.tf_device)
                self.source = "tensorflow allocator"
            except ValueError:
                pass
        elif self.gpu:
            self.source = f"{self.backend} device allocator"
        # JAX keeps a process-lifetime peak; everything else can be reset.
        self.resettable = not (self.gpu and self.backend == "jax")

    def __enter__(self):
        gc.collect()
        self.before = self._reset_and_read()
        return self

    def __exit__(self, *exc):
        if self.backend == "torch" and self.gpu:
            import torch

            torch.cuda.synchronize()
        else:
            sync()
        self.peak = self._peak() - self.before

    def _reset_and_read(self):
        if self.source == "tensorflow allocator":
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats(self.tf_device)
            return tf.config.experimental.get_memory_info(self.tf_device)["current"]
        if self.source == "resident set":
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set
            return _proc_status_bytes("VmRSS")
        if self.backend == "jax":
            import jax

            return jax.devices()[0].memory_stats()["bytes_in_use"]
        import torch

        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()

    def _peak(self):
        if self.source == "tensorflow allocator":
            import tensorflow as tf

            return tf.config.experimental.get_memory_info(self.tf_device)["peak"]
        if self.source == "resident set":
            return _proc_status_bytes("VmHWM")
        if self.backend == "jax":
            import jax

            return jax.devices()[0].memory_stats()["peak_bytes_in_use"]
        import torch

        return torch.cuda.max_memory_allocated()


def _proc_status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def measure_peak_memory(spec):
    """Peak bytes of the forward and the forward+backward call of each case in `spec`.

    Runs in the subprocess (see `peak_memory`). Calls are measured after warm-up calls
    of the same kind and shape, forward before train, so compilation and first-use
    allocations are not counted and, where the peak cannot be reset, the forward peak is
    read before the larger training one. TensorFlow runs one op at a time here, and the
    median of `spec["repeats"]` calls is kept.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # One op at a time: the peak then depends on the graph, not on thread timing.
        tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.config.set_dtype_policy(spec["precision"])
    results = []
    for case in spec["cases"]:
        shape = tuple(case["shape"])
        layer = make_layer(case["name"], case["kwargs"], shape[-1], len(shape) - 2)
        x = random_input(shape)
        forward, train = compiled_calls(layer, x, spec["jit"])
        framework = None
        if case.get("timm"):  # timm's module, built from ours, instead of ours
            timm = import_timm()
            module, note = timm_module(timm, case["name"], layer, shape)
            if module is None:
                raise ValueError(f"no timm module for {case['name']}: {note}")
            forward, train = timm_calls(timm, module, x)
            framework = "torch"
        peaks = {}
        for mode, call in (("forward", forward), ("train", train)):
            for _ in range(spec["warmup"]):
                call()
            samples = []
            for _ in range(spec["repeats"]):
                with PeakMeter(framework) as meter:
                    out = call()
                del out
                samples.append(meter.peak)
            peaks[mode] = statistics.median(samples)
        results.append(peaks)
        del layer, x, forward, train
    return results


def peak_memory(cases, precision, jit, warmup=1, repeats=3, probe=None):
    """Runs `measure_peak_memory` in fresh processes; a dict per case, None on failure.

    `probe`: (module name, function name) of another probe taking the same spec (the
    segmentation table's whole training steps); default this module's.
    """
    module, function = probe or (__name__, "measure_peak_memory")
    meter = PeakMeter()
    if meter.source == "resident set" and not os.path.exists("/proc/self/clear_refs"):
        return [None] * len(cases)  # no resettable resident-set peak on this OS
    # timm's cases get processes of their own: the resident set then counts only them.
    if meter.resettable:
        batches = [[c for c in cases if not c.get("timm")]] + [[c] for c in cases if c.get("timm")]
        batches = [batch for batch in batches if batch]
    else:
        batches = [[case] for case in cases]
    # The probe imports this module by its name, from the folder above its top package
    # (the repository's root for `examples.benchmark.memory`).
    package_root = pathlib.Path(__file__).resolve().parents[__name__.count(".")]
    env = dict(os.environ)
    env.update(
        KERAS_BACKEND=keras.backend.backend(),
        TF_CPP_MIN_LOG_LEVEL="3",
        # For resident-set peaks: a fixed (not adaptive) mmap threshold, so that big
        # tensors are mmap'ed and unmapped on free and the resident set follows them.
        MALLOC_MMAP_THRESHOLD_="65536",
        MALLOC_TRIM_THRESHOLD_="65536",
        PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(keras_attention.__file__)), str(package_root)]
            + [p for p in [env.get("PYTHONPATH")] if p]
        ),
    )
    code = (
        "import importlib, json, sys; "
        "probe = getattr(importlib.import_module(sys.argv[1]), sys.argv[2]); "
        "print('\\nPEAKS ' + json.dumps(probe(json.loads(sys.argv[3]))))"
    )
    results = []
    for batch in batches:
        spec = {
            "precision": precision,
            "jit": jit,
            "warmup": warmup,
            "repeats": repeats,
            "cases": batch,
        }
        proc = subprocess.run(
            [sys.executable, "-c", code, module, function, json.dumps(spec)],
            env=env,
            capture_output=True,
            check=False,
            text=True,
        )
        lines = [l for l in proc.stdout.splitlines() if l.startswith("PEAKS ")]
        if proc.returncode or not lines:
            print(f"memory probe failed for {batch}:\n{proc.stderr[-2000:]}", file=sys.stderr)
            results.extend([None] * len(batch))
        else:
            results.extend(json.loads(lines[-1][len("PEAKS ") :]))
    return results
