"""
Title: The speed and memory cost of every attention mechanism
Author: keras_attention contributors
Date created: 2026/11/25
Last modified: 2026/11/25
Description: Time and peak memory of every attention layer and attention ResNet-50, vs baselines.
Accelerator: CPU or GPU
"""

"""
## Introduction

Papers report their attention blocks as "cheap". This script measures how cheap, on
the machine and backend at hand, side by side:

* **Layers.** Every layer in `keras_attention.available()` on the shapes it is used at:
  the channel family (SE, ECA, SK, CBAM, ...) on `(32, 56, 56, 256)`, the spatial and
  mixed family (self-attention, non-local, DANet, CCNet, ...) on `(8, 28, 28, 512)` and
  `(1, 56, 56, 512)`. Each is timed against a **1x1 convolution** with as many output
  channels as input channels (no bias), measured in the same rounds: a layer at "2.0x"
  costs two such convolutions.
* **Targets.** CCNet's criss-cross attention against the non-local block (embedded
  Gaussian, no sub-sampling) at `(1, 97, 97, 512)`, and how their peak memory grows with
  H*W.
* **Models.** One training step of ResNet-50 with each attention, divided by plain
  ResNet-50's, and batch-1 inference, the setting of the SE paper's CPU figure.
* **timm** (`--vs-timm`, with torch and timm installed). timm's own module for every layer
  that timm has, timed on the same input in the same rounds (PyTorch on the GPU when CUDA is
  available), and ours/timm per layer; with the targets, timm's non-local block's memory.
  `--threads` sets the same CPU thread count on both sides. With the models, the training
  step of `ResNet50(attention="se")` and of `from_timm("seresnet50")` (random weights)
  beside timm's own seresnet50, in the same rounds.
* **Before/after the fused BatchNormalization** (`--keras-batch-norm`). Every layer and
  model that holds the package's BatchNormalization (`ops.batch_norm`'s backend kernels)
  is timed a second time, in the same rounds, built with Keras's own layer in its place.

Run it with the backend you care about, e.g.
`KERAS_BACKEND=jax python examples/benchmark.py --precision mixed_bfloat16 --output jax.md`.

### How it measures

* **Compiled calls.** On TensorFlow each layer runs inside `tf.function` (XLA when
  `--jit-compile` resolves to true), forward with `training=False`, forward+backward as
  the gradient of `sum(outputs)` with respect to the input and every trainable weight.
  On JAX the same two functions are `jax.jit`-compiled over `layer.stateless_call`.
  PyTorch runs eagerly. Models use Keras's own `train_on_batch` / `predict_on_batch`.
* **Noise.** Warm-up calls (compilation included) are not timed. Each round times every
  case once, in an order that rotates from round to round, so the baseline and the
  subjects share the machine's moments; a ratio is the median over rounds of the
  subject's time over the baseline's time of the same round.
* **Peak memory** is measured in a fresh subprocess per shape group: after a warm-up call
  at the measured shape, the peak of the next call minus what was in use just before
  it. TensorFlow reports its allocator's peak (`tf.config.experimental.get_memory_info`,
  reset before each call), on the CPU as well as on a GPU; JAX and PyTorch GPUs report
  their device allocator's (`memory_stats()["peak_bytes_in_use"]`: JAX cannot reset it,
  so there each case gets its own process; `torch.cuda.max_memory_allocated`). On a CPU
  without allocator statistics the resident set is used (Linux `VmHWM`, reset through
  `/proc/self/clear_refs`, with glibc's mmap threshold pinned so freed tensors leave it).
"""

"""
## Setup
"""

import argparse
import contextlib
import gc
import importlib
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# On a GPU, JAX would otherwise take 75% of its memory up front, starving timm's PyTorch
# beside it (--vs-timm); set before JAX loads. The peak-memory figures are unaffected.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import keras
import numpy as np

import keras_attention

BASELINE = "conv1x1"
# timm's NonLocalAttn in the memory targets (--vs-timm).
TIMM_NON_LOCAL = "timm NonLocalAttn"
# What the harness itself costs: the call, the cast and sum of the loss and its gradient.
IDENTITY = "identity"
MIB = 2.0**20

# Short name -> (shape family, constructor kwargs at the benchmark shapes). Names not
# listed here still run, as "spatial" layers with their default arguments.
LAYER_SETTINGS = {
    "se": ("channel", {}),
    "eca": ("channel", {}),
    "sk": ("channel", {"groups": 32}),
    "cbam": ("channel", {}),
    "channel_gate": ("channel", {}),
    "spatial_gate": ("channel", {}),
    "self_attention": ("spatial", {}),
    "non_local": ("spatial", {"mode": "embedded_gaussian", "sub_sample": False}),
    "stn": ("spatial", {}),
    "danet": ("spatial", {}),
    "position_attention": ("spatial", {}),
    "channel_attention": ("spatial", {}),
    "ccnet": ("spatial", {"recurrence": 2}),
    "residual": ("spatial", {}),
    # Other branches' layers (used only once registered): channel attention and SK-like
    # convolutions on the channel shapes.
    "gc": ("channel", {}),
    "split_attention": ("channel", {}),
    "ge": ("channel", {}),
    "coord": ("channel", {}),
    "ese": ("channel", {}),
    # Layers that need the feature size or a block size dividing it: see `layer_kwargs`.
    "bot": ("spatial", {"num_heads": 4}),
    "halo": ("spatial", {"num_heads": 8}),
    "lambda": ("spatial", {}),
}


def layer_kwargs(name, shape):
    """Constructor kwargs of `name` at `shape` (NHWC): the table's, plus shape-bound ones."""
    kwargs = dict(LAYER_SETTINGS.get(name, (None, {}))[1])
    height, width = shape[1], shape[2]
    if name == "bot":
        kwargs["feature_size"] = (height, width)
    if name == "axial":
        kwargs["span"] = (height, width)
    if name == "halo":
        # timm's HaloAttn needs the block size to divide H and W (8 divides neither 28 nor 56).
        block = next(b for b in (8, 7, 4, 3, 2, 1) if height % b == 0 and width % b == 0)
        kwargs.update(block_size=block, halo_size=max(1, block // 2))
    return kwargs


# --shapes: the paper-scale shapes, or tiny ones for smoke tests.
SHAPES = {
    "standard": {
        "channel": [(32, 56, 56, 256)],
        "spatial": [(8, 28, 28, 512), (1, 56, 56, 512)],
        "target": (1, 97, 97, 512),
        "growth": [14, 28, 56, 97],
        "model_size": 224,
        "model_batch": 16,
        "warmup": 2,
        "repeats": 5,
        "model_repeats": 9,
        "models": "none,scale,se,eca,cbam,sk",
        "layer_memory": True,
    },
    # The shapes of the issue's ours-vs-timm table: a quarter of "standard"'s channel batch.
    "timm": {
        "channel": [(8, 56, 56, 256)],
        "spatial": [(4, 28, 28, 512)],
        "target": (1, 97, 97, 512),
        "growth": [56, 97],
        "model_size": 224,
        "model_batch": 16,
        "warmup": 2,
        "repeats": 7,
        "model_repeats": 9,
        "models": "none,scale,se,eca,cbam,sk",
        "layer_memory": True,
    },
    "small": {
        # 128 channels: the default groups of SGE (64) and shuffle attention (2 x 64) divide it.
        "channel": [(2, 8, 8, 128)],
        "spatial": [(1, 8, 8, 32)],
        "target": (1, 9, 9, 32),
        "growth": [5, 9],
        "model_size": 32,
        "model_batch": 2,
        "warmup": 1,
        "repeats": 2,
        "model_repeats": 1,
        "models": "none,se",
        # Tiny maps say nothing about memory, and each probe process re-traces every layer.
        "layer_memory": False,
    },
}

"""
## Command line
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=(
            "Time (forward, forward+backward) and peak memory of every registered "
            "attention layer against a 1x1-convolution baseline, the CCNet/non-local "
            "memory targets, and the training step of attention ResNet-50s against "
            "plain ResNet-50. The backend is KERAS_BACKEND's."
        )
    )
    parser.add_argument(
        "--layers",
        default="all",
        help="comma-separated short names from keras_attention.available() to "
        "benchmark (e.g. 'se,eca'), 'all' (default), or 'none'",
    )
    parser.add_argument(
        "--shapes",
        choices=sorted(SHAPES),
        default="standard",
        help="'standard': (32,56,56,256) for channel attention, (8,28,28,512) and "
        "(1,56,56,512) for spatial attention, 97x97x512 for the targets; 'timm': "
        "(8,56,56,256) and (4,28,28,512), the shapes of the ours-vs-timm tables; 'small': tiny "
        "shapes that only check the script runs",
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
        default="float32",
        help="Keras dtype policy for layers and models; inputs are fed in its compute dtype",
    )
    parser.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="XLA for the compiled calls: 'auto' follows Keras (TensorFlow: XLA on GPU "
        "only; JAX: always); ignored by PyTorch",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed calls per case, compilation included (default: 2; 1 with --shapes small)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rounds per layer case, median reported (default: 5; 2 with --shapes small)",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory subprocesses (memory columns then read n/a); --shapes "
        "small measures only the CCNet/non-local targets' memory",
    )
    parser.add_argument(
        "--no-layer-memory",
        action="store_true",
        help="skip the per-layer peak-memory subprocesses but keep the targets' (on a GPU "
        "with JAX every case is a fresh process: this saves most of the run)",
    )
    parser.add_argument(
        "--skip-targets",
        action="store_true",
        help="skip the CCNet vs non-local memory target and the memory-growth table",
    )
    parser.add_argument(
        "--growth",
        default="",
        help="more layers for the memory-growth table beside non_local and ccnet, e.g. "
        "'bot,halo,lambda,a2,external,outlook,polarized,cot,axial' (linear vs quadratic "
        "in H*W); each size is a fresh process, so each name adds minutes",
    )
    parser.add_argument("--skip-models", action="store_true", help="skip the ResNet-50 comparison")
    parser.add_argument(
        "--models",
        default=None,
        help="attentions for keras_attention.models.ResNet50(attention=...): short "
        "names, 'none' (plain ResNet-50, the baseline) and 'scale' (a bare learnable "
        "per-channel multiply, the floor of channel gating); default "
        "'none,scale,se,eca,cbam,sk' ('none,se' with --shapes small)",
    )
    parser.add_argument(
        "--model-batch",
        type=int,
        default=None,
        help="batch size of the timed training step (default: 16; 2 with --shapes small)",
    )
    parser.add_argument(
        "--model-size",
        type=int,
        default=None,
        help="input height and width of the models (default: 224; 32 with --shapes small)",
    )
    parser.add_argument(
        "--model-repeats",
        type=int,
        default=None,
        help="timed rounds per model, median reported (default: 9; 1 with --shapes small)",
    )
    parser.add_argument(
        "--vs-timm",
        action="store_true",
        help="also time timm's equivalent module (PyTorch, on the GPU when torch.cuda is "
        "available) for every layer that timm has, in the same rounds, and print ours/timm",
    )
    parser.add_argument(
        "--keras-batch-norm",
        action="store_true",
        help="also time every layer and model that holds BatchNormalization a second time "
        "with Keras's own keras.layers.BatchNormalization in place of the package's fused "
        "one, in the same rounds (rows marked 'Keras BN': the fast path's before/after)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="CPU threads for TensorFlow (intra- and inter-op) and PyTorch, set equal on "
        "both sides of --vs-timm (default: all cores)",
    )
    parser.add_argument(
        "--output", default=None, help="also write the Markdown report to this file"
    )
    args = parser.parse_args(argv)
    for flag in ("model_size", "model_batch", "warmup", "repeats", "model_repeats", "models"):
        if getattr(args, flag) is None:
            setattr(args, flag, SHAPES[args.shapes][flag])
    for flag in ("warmup", "repeats", "model_batch", "model_size", "model_repeats", "threads"):
        if getattr(args, flag) < (0 if flag == "warmup" else 1):
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    return args


# Layers that take more than one input map (AttentionGate: [x, g]) have no
# single-input case here; name them in --layers to be told so.
MULTI_INPUT = {"attention_gate"}


def selected_layers(spec):
    available = keras_attention.available()
    if spec == "all":
        return [name for name in available if name not in MULTI_INPUT]
    if spec == "none":
        return []
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise ValueError(f"Unknown --layers {unknown}. Available: {', '.join(available)}")
    if set(names) & MULTI_INPUT:
        raise ValueError(f"--layers {sorted(set(names) & MULTI_INPUT)} take several inputs")
    return names


def layer_family(name):
    """'channel' (gates, timed at the channel shape) or 'spatial' (attention over positions)."""
    if name in LAYER_SETTINGS:
        return LAYER_SETTINGS[name][0]
    return "spatial" if name in keras_attention.available("spatial") else "channel"


def resolve_jit(flag):
    """True/False for the compiled calls: Keras's own rule when 'auto'."""
    if flag != "auto":
        return flag == "true"
    return keras.backend.backend() == "jax" or _accelerator() is not None


"""
## The machine
"""


def _accelerator():
    """The GPU's name, or None when running on the CPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return None if device.platform == "cpu" else device.device_kind
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _onednn_note(backend):
    """Whether TensorFlow runs oneDNN on this CPU: its convolutions, SK's above all, depend on it."""
    if backend != "tensorflow" or _accelerator() is not None:
        return ""
    from keras_attention.models._common import channels_first_runs

    # Only oneDNN gives TensorFlow an NCHW convolution on a CPU.
    return ", oneDNN on" if channels_first_runs() else ", oneDNN off"


def environment(args, jit):
    backend = keras.backend.backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    lib_version = __import__(module).__version__ if module else "?"
    return {
        "device": _accelerator() or f"CPU: {_cpu_name()}, {os.cpu_count()} cores",
        "backend": f"{backend} {lib_version}" + _onednn_note(backend),
        "precision": args.precision,
        "jit_compile": jit,
        "peak memory": "not measured" if args.no_memory else PeakMeter().source,
        "versions": f"python {platform.python_version()}, keras {keras.__version__}, "
        f"numpy {np.__version__}, keras_attention {keras_attention.__version__}",
    }


def sync():
    """Waits for queued device work (GPU backends run asynchronously)."""
    if _accelerator() is None:
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.test.experimental.sync_devices()
    elif backend == "torch":
        import torch

        torch.cuda.synchronize()


"""
## Compiled calls of one layer

`forward()` and `train()` run one call and return only when it is done. The loss of the
backward pass is `sum(outputs)` in float32: its gradient flows through the whole layer
to the input and every trainable weight, as inside a network.
"""


def make_layer(name, kwargs, channels):
    if name == BASELINE:
        return keras.layers.Conv2D(channels, 1, use_bias=False, name=BASELINE)
    if name == IDENTITY:
        return keras.layers.Identity(name=IDENTITY)
    return keras_attention.get(name, **kwargs)


@contextlib.contextmanager
def keras_batch_norm():
    """Layers and models built inside hold `keras.layers.BatchNormalization` (no fast path).

    The package creates every BatchNormalization through `layers.base.batch_norm` and
    `models._common.batch_norm`, which look the class up at call time.
    """
    from keras_attention.layers import base
    from keras_attention.models import _common

    fused = base.BatchNormalization
    base.BatchNormalization = _common.BatchNormalization = keras.layers.BatchNormalization
    try:
        yield
    finally:
        base.BatchNormalization = _common.BatchNormalization = fused


def holds_fused_batch_norm(layer):
    """Whether `layer` (built) has one of the package's fused BatchNormalization sublayers."""
    from keras_attention.layers.batch_normalization import BatchNormalization

    return any(isinstance(s, BatchNormalization) for s in layer._flatten_layers())


# Row-name suffix of the layers and models timed with Keras's BatchNormalization.
KERAS_BN = " (Keras BN)"


def random_input(shape, seed=0):
    """A normal input in the policy's compute dtype, created on the default device."""
    x = keras.random.normal(shape, seed=seed)
    return keras.ops.cast(x, keras.config.dtype_policy().compute_dtype)


def _sum_loss(outputs):
    return keras.ops.sum(keras.ops.cast(outputs, "float32"))


def compiled_calls(layer, x, jit):
    # Build on one sample: layers with fixed sizes (BoT, halo blocks, axial span)
    # accept only the measured spatial size.
    layer(x[:1])
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_calls(layer, x, jit)
    if backend == "jax":
        return _jax_calls(layer, x)
    if backend == "torch":
        return _torch_calls(layer, x)
    raise NotImplementedError(f"No benchmark for the {backend!r} backend")


def _tensorflow_calls(layer, x, jit):
    import tensorflow as tf

    weights = layer.trainable_variables

    @tf.function(jit_compile=jit)
    def forward(x):
        return layer(x, training=False)

    @tf.function(jit_compile=jit)
    def train(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = _sum_loss(layer(x, training=True))
        return tape.gradient(loss, [x, *weights])

    def run_forward():
        out = forward(x)
        sync()
        return out

    def run_train():
        out = train(x)
        sync()
        return out

    return run_forward, run_train


def _jax_calls(layer, x):
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    # Unlike __call__, stateless_call passes `training` on even to layers without it.
    takes_training = "training" in inspect.signature(layer.call).parameters

    def call(trainable, non_trainable, x, training):
        kwargs = {"training": training} if takes_training else {}
        return layer.stateless_call(trainable, non_trainable, x, **kwargs)

    @jax.jit
    def forward(trainable, non_trainable, x):
        return call(trainable, non_trainable, x, False)[0]

    def loss(trainable, non_trainable, x):
        outputs, updated = call(trainable, non_trainable, x, True)
        return _sum_loss(outputs), updated

    gradients = jax.jit(jax.grad(loss, argnums=(0, 2), has_aux=True))
    return (
        lambda: jax.block_until_ready(forward(trainable, non_trainable, x)),
        lambda: jax.block_until_ready(gradients(trainable, non_trainable, x)),
    )


def _torch_calls(layer, x):
    import torch

    def run_forward():
        with torch.no_grad():
            out = layer(x, training=False)
        sync()
        return out

    def run_train():
        for variable in layer.trainable_variables:
            variable.value.grad = None
        leaf = x.detach().requires_grad_(True)
        _sum_loss(layer(leaf, training=True)).backward()
        sync()
        return leaf.grad

    return run_forward, run_train


"""
## Interleaved timing
"""


def time_interleaved(calls, warmup, repeats):
    """Seconds per call of each entry of `calls` (key -> callable), one per round.

    Every round runs every call once; the order rotates so that no case always runs
    right after another (caches, thermal and neighbour noise spread evenly).
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    keys = list(calls)
    samples = {key: [] for key in keys}
    for round_index in range(repeats):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            calls[key]()
            samples[key].append(time.perf_counter() - start)
    return samples


def paired_ratio(samples, baseline):
    """Median over rounds of sample / baseline sample of the same round."""
    return statistics.median(s / b for s, b in zip(samples, baseline))


"""
## Peak memory, in fresh processes
"""


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
            self.gpu = _accelerator() is not None
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
        layer = make_layer(case["name"], case["kwargs"], shape[-1])
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


def peak_memory(cases, precision, jit, warmup=1, repeats=3):
    """Runs `measure_peak_memory` in fresh processes; a dict per case, None on failure."""
    meter = PeakMeter()
    if meter.source == "resident set" and not os.path.exists("/proc/self/clear_refs"):
        return [None] * len(cases)  # no resettable resident-set peak on this OS
    # timm's cases get processes of their own: the resident set then counts only them.
    if meter.resettable:
        batches = [[c for c in cases if not c.get("timm")]] + [[c] for c in cases if c.get("timm")]
        batches = [batch for batch in batches if batch]
    else:
        batches = [[case] for case in cases]
    env = dict(os.environ)
    env.update(
        KERAS_BACKEND=keras.backend.backend(),
        TF_CPP_MIN_LOG_LEVEL="3",
        # For resident-set peaks: a fixed (not adaptive) mmap threshold, so that big
        # tensors are mmap'ed and unmapped on free and the resident set follows them.
        MALLOC_MMAP_THRESHOLD_="65536",
        MALLOC_TRIM_THRESHOLD_="65536",
        PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(keras_attention.__file__))]
            + [p for p in [env.get("PYTHONPATH")] if p]
        ),
    )
    code = (
        "import json, runpy, sys; "
        "probe = runpy.run_path(sys.argv[1])['measure_peak_memory']; "
        "print('\\nPEAKS ' + json.dumps(probe(json.loads(sys.argv[2]))))"
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
            [sys.executable, "-c", code, os.path.abspath(__file__), json.dumps(spec)],
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


"""
## Against timm

`--vs-timm` times timm's own module for each layer that timm implements, on the same
input (NCHW, as timm runs it), in the same interleaved rounds as ours. Each entry of
`TIMM_EQUIVALENTS` builds timm's module from our built layer, with timm's settings set to
do the same work (the text beside it says which); short names missing from
`keras_attention.available()` are skipped, so entries for layers of other branches can sit
here before those land. timm's forward runs in `eval()` under `torch.no_grad()`, its
forward+backward in `train()` mode with the gradient of `sum(outputs)` (float32) to the
input and every parameter, like ours. Under a mixed policy timm runs under
`torch.autocast` with the policy's compute dtype. On a GPU (`torch.cuda.is_available()`)
timm runs there and each call ends with `torch.cuda.synchronize()`.
"""


def _timm_class(timm, path):
    """A class of timm.layers by "module.Class" (not all are re-exported by timm.layers)."""
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(f"timm.layers.{module}"), name)


def _units(layer, channels, attribute="units", minimum=1):
    """Our hidden width: the explicit `units` or C // reduction (at least `minimum`)."""
    units = getattr(layer, attribute, None)
    return units or max(minimum, channels // layer.reduction)


def _timm_se(timm, layer, channels, shape):
    return timm.layers.SEModule(channels, rd_channels=_units(layer, channels), bias=True)


def _timm_eca(timm, layer, channels, shape):
    if getattr(layer, "padding", "zeros") == "circular":
        return timm.layers.CecaModule(channels, kernel_size=layer.conv.kernel.shape[0])
    return timm.layers.EcaModule(channels, kernel_size=layer.conv.kernel.shape[0])


def _timm_cbam(timm, layer, channels, shape):
    return _timm_class(timm, "cbam.CbamModule")(
        channels,
        rd_channels=_units(layer, channels),
        spatial_kernel_size=layer.kernel_size,
        mlp_bias=True,
    )


def _timm_channel_gate(timm, layer, channels, shape):
    return _timm_class(timm, "cbam.ChannelAttn")(
        channels, rd_channels=_units(layer, channels), mlp_bias=True
    )


def _timm_spatial_gate(timm, layer, channels, shape):
    return _timm_class(timm, "cbam.SpatialAttn")(layer.kernel_size)


def _timm_sk(timm, layer, channels, shape):
    return timm.layers.SelectiveKernel(
        channels,
        layer.filters or channels,
        kernel_size=[1 + 2 * d for d in layer.dilations],  # 3x3 with dilation d (keep_3x3)
        stride=getattr(layer, "strides", 1),
        groups=layer.groups,
        rd_channels=layer.fuse_dense.units,
        split_input=getattr(layer, "split_input", False),
    )


def _timm_non_local(timm, layer, channels, shape):
    if layer.mode != "embedded_gaussian" or layer.sub_sample:
        raise ValueError("timm's NonLocalAttn is embedded Gaussian without sub-sampling")
    inter = layer.inter_channels or max(1, channels // 2)
    return timm.layers.NonLocalAttn(channels, use_scale=False, rd_channels=inter)


def _timm_gc(timm, layer, channels, shape):
    fusion = layer.fusion
    return timm.layers.GlobalContext(
        channels,
        use_attn=layer.pooling == "attention",
        fuse_add="add" in fusion,
        fuse_scale="mul" in fusion,
        rd_channels=layer.units or max(1, int(channels / layer.reduction + 0.5)),
    )


def _timm_split_attention(timm, layer, channels, shape):
    return timm.layers.SplitAttn(
        channels,
        layer.filters or channels,
        kernel_size=layer.kernel_size,
        stride=layer.strides,
        groups=layer.cardinality,
        radix=layer.radix,
        rd_channels=layer._units,
        norm_layer=timm.torch.nn.BatchNorm2d,
    )


def _timm_ge(timm, layer, channels, shape):
    return timm.layers.GatherExcite(
        channels,
        feat_size=shape[1:3],
        extra_params=layer.extra_params,
        extent=layer.extent,
        use_mlp=layer.use_mlp,
        rd_channels=_units(layer, channels),
    )


def _timm_coord(timm, layer, channels, shape):
    units = max(layer.min_units, channels // layer.reduction)
    return _timm_class(timm, "coord_attn.CoordAttn")(channels, rd_channels=units, bias=True)


def _timm_ese(timm, layer, channels, shape):
    return timm.layers.EffectiveSEModule(channels, gate_layer=layer.gate)


def _timm_bot(timm, layer, channels, shape):
    return _timm_class(timm, "bottleneck_attn.BottleneckAttn")(
        channels,
        feat_size=shape[1:3],
        num_heads=layer.num_heads,
        dim_head=layer.key_dim,
        qkv_bias=layer.use_bias,
        scale_pos_embed=layer.scale_position_logits,
    )


def _timm_halo(timm, layer, channels, shape):
    return _timm_class(timm, "halo_attn.HaloAttn")(
        channels,
        feat_size=shape[1:3],
        num_heads=layer.num_heads,
        dim_head=layer.key_dim,
        block_size=layer.block_size,
        halo_size=layer.halo_size,
        qkv_bias=layer.use_bias,
        scale_pos_embed=layer.scale_position_logits,
    )


def _timm_lambda(timm, layer, channels, shape):
    return _timm_class(timm, "lambda_layer.LambdaLayer")(
        channels,
        feat_size=shape[1:3],
        num_heads=layer.num_heads,
        dim_head=layer.key_dim,
        r=layer.context_size,
        qkv_bias=layer.use_bias,
    )


# Short name -> (timm's class, builder from our built layer, the settings matched to ours).
TIMM_EQUIVALENTS = {
    "se": ("SEModule", _timm_se, "rd_channels=C//reduction, bias=True (ReLU, sigmoid)"),
    "eca": ("EcaModule", _timm_eca, "our kernel size (CecaModule for circular padding)"),
    "cbam": ("CbamModule", _timm_cbam, "rd_channels=C//reduction, mlp_bias=True, our kernel"),
    "channel_gate": ("cbam.ChannelAttn", _timm_channel_gate, "rd_channels, mlp_bias=True"),
    "spatial_gate": ("cbam.SpatialAttn", _timm_spatial_gate, "our kernel size (conv+BN)"),
    "sk": (
        "SelectiveKernel",
        _timm_sk,
        "our groups, dilations (keep_3x3), stride, split_input and fuse width",
    ),
    "non_local": (
        "NonLocalAttn",
        _timm_non_local,
        "use_scale=False, rd_channels=C/2 (its extra phi, g, W biases kept)",
    ),
    "gc": ("GlobalContext", _timm_gc, "our pooling, fusion and width"),
    "split_attention": (
        "SplitAttn",
        _timm_split_attention,
        "our radix, cardinality, width; BatchNorm",
    ),
    "ge": ("GatherExcite", _timm_ge, "our extent, extra_params, use_mlp and width"),
    "coord": ("CoordAttn", _timm_coord, "rd_channels=max(min_units, C//reduction), bias=True"),
    "ese": ("EffectiveSEModule", _timm_ese, "our gate"),
    "bot": ("BottleneckAttn", _timm_bot, "our heads, key width, feature size"),
    "halo": ("HaloAttn", _timm_halo, "our heads, key width, block and halo"),
    "lambda": ("LambdaLayer", _timm_lambda, "our heads, key width, context size r"),
}


def import_timm():
    """timm (with `timm.torch`), or None (the reason on stderr) when it cannot load."""
    try:
        importlib.import_module("timm.layers")
    except (ImportError, RuntimeError):
        # PyPI's torchvision does not load beside a CPU torch wheel: the tests' stubs.
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
        try:
            importlib.import_module("timm_import").import_timm()
            importlib.import_module("timm.layers")
        except (ImportError, RuntimeError) as error:
            print(f"--vs-timm: timm cannot be imported ({error})", file=sys.stderr)
            return None
    timm = sys.modules["timm"]
    timm.torch = importlib.import_module("torch")
    return timm


def timm_module(timm, name, layer, shape):
    """timm's module equivalent to our built `layer` at `shape`, or an error message."""
    entry = TIMM_EQUIVALENTS.get(name)
    if entry is None:
        return None, "no timm equivalent"
    try:
        return entry[1](timm, layer, shape[-1], tuple(shape)), None
    except Exception as error:  # noqa: BLE001 (any argument timm cannot express)
        return None, " ".join(f"{type(error).__name__}: {error}".split())


def _timm_device(torch):
    return "cuda" if torch.cuda.is_available() else "cpu"


def timm_calls(timm, module, x):
    """forward() and train() of a timm module on `x` (our NHWC input), like ours."""
    torch = timm.torch
    device = _timm_device(torch)
    compute_dtype = keras.config.dtype_policy().compute_dtype
    dtype = getattr(torch, compute_dtype)
    values = keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")).transpose(0, 3, 1, 2)
    x = torch.from_numpy(values.copy()).to(device=device, dtype=dtype)
    module = module.to(device)
    mixed = compute_dtype != "float32"

    def autocast():
        return torch.autocast(device, dtype=dtype, enabled=mixed)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def run_forward():
        module.eval()
        with torch.no_grad(), autocast():
            out = module(x)
        sync()
        return out

    def run_train():
        module.train()
        for parameter in module.parameters():
            parameter.grad = None
        leaf = x.detach().requires_grad_(True)
        with autocast():
            out = module(leaf)
        out.float().sum().backward()
        sync()
        return leaf.grad

    return run_forward, run_train


def pin_threads(threads):
    """The same number of CPU threads for our backend and PyTorch; what each really uses."""
    pinned = {}
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # the runtime already started (e.g. imported by a test)
            pass
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        pinned["tensorflow"] = intra or f"default ({os.cpu_count()})"
    elif backend == "jax":
        pinned["jax"] = f"XLA's default ({os.cpu_count()} cores)"
    try:
        import torch
    except ImportError:
        return pinned
    torch.set_num_threads(threads)
    pinned["torch"] = torch.get_num_threads()
    return pinned


"""
## Layers
"""


def layer_cases(names, shapes):
    """(shape, [(name, kwargs), ...]) groups: the baseline, the identity, then the layers."""
    groups = []
    for family in ("channel", "spatial"):
        members = [n for n in names if layer_family(n) == family]
        for shape in shapes[family] if members else []:
            cases = [(BASELINE, {}), (IDENTITY, {})] + [
                (n, layer_kwargs(n, shape)) for n in members
            ]
            groups.append((shape, cases))
    return groups


def bench_layers(names, args, jit, timm=None):
    rows = []
    for shape, cases in layer_cases(names, SHAPES[args.shapes]):
        print(f"timing {len(cases)} cases at {shape} ...", flush=True)
        x = random_input(shape)
        calls, timm_names = {}, {}
        for name, kwargs in cases:
            layer = make_layer(name, kwargs, shape[-1])
            forward, train = compiled_calls(layer, x, jit)
            calls[(name, "forward")] = forward
            calls[(name, "train")] = train
            if args.keras_batch_norm and holds_fused_batch_norm(layer):
                with keras_batch_norm():
                    before = make_layer(name, kwargs, shape[-1])
                    forward, train = compiled_calls(before, x, jit)
                calls[(name + KERAS_BN, "forward")] = forward
                calls[(name + KERAS_BN, "train")] = train
            if timm is not None and name in TIMM_EQUIVALENTS:
                module, note = timm_module(timm, name, layer, shape)
                timm_names[name] = (TIMM_EQUIVALENTS[name][0], note)
                if module is not None:
                    forward, train = timm_calls(timm, module, x)
                    try:  # e.g. timm's BatchNorm on pooled vectors refuses a batch of 1
                        train()
                    except Exception as error:  # noqa: BLE001 (reported, not timed)
                        timm_names[name] = (
                            timm_names[name][0],
                            " ".join(f"timm fails: {error}".split()),
                        )
                        continue
                    calls[(name, "timm forward")] = forward
                    calls[(name, "timm train")] = train
        samples = time_interleaved(calls, args.warmup, args.repeats)
        del calls, x
        gc.collect()
        peaks = [None] * len(cases)
        if not (args.no_memory or args.no_layer_memory) and SHAPES[args.shapes]["layer_memory"]:
            memory_cases = [{"name": n, "kwargs": k, "shape": list(shape)} for n, k in cases]
            peaks = peak_memory(memory_cases, args.precision, jit)
        base_peak = peaks[0] or {}
        rows_of_cases = []
        for (name, kwargs), peak in zip(cases, peaks):
            rows_of_cases.append((name, name, kwargs, peak))
            if (name + KERAS_BN, "train") in samples:
                rows_of_cases.append((name + KERAS_BN, name, kwargs, None))
        for label, name, kwargs, peak in rows_of_cases:
            row = {"layer": label, "kwargs": kwargs, "shape": shape}
            for mode in ("forward", "train"):
                own, base = samples[(label, mode)], samples[(BASELINE, mode)]
                row[f"{mode}_ms"] = 1000 * statistics.median(own)
                row[f"{mode}_ratio"] = paired_ratio(own, base)
                row[f"{mode}_mib"] = peak[mode] / MIB if peak else None
                row[f"{mode}_mib_ratio"] = (
                    peak[mode] / base_peak[mode] if peak and base_peak.get(mode) else None
                )
            if name in timm_names:
                row["timm"], row["timm_note"] = timm_names[name]
                row["timm_note"] = row["timm_note"] or TIMM_EQUIVALENTS[name][2]
                for mode in ("forward", "train"):
                    theirs = samples.get((name, f"timm {mode}"))
                    row[f"timm_{mode}_ms"] = theirs and 1000 * statistics.median(theirs)
                    row[f"vs_timm_{mode}"] = theirs and paired_ratio(samples[(label, mode)], theirs)
            rows.append(row)
    return rows


"""
## Targets: criss-cross vs non-local memory
"""


# Halo's blocks must tile the map (no padding, as in timm): in the growth table a size
# that its block does not divide (97 is prime) is measured at the multiple of the block
# below it (97 -> 96), so that the block, and with it the cost per position, stays the
# same at every size. The table names the sizes measured; the exponent uses them.
GROWTH_BLOCK = {"halo": 8}


def growth_size(name, size):
    """The H = W at which `name` is measured for the nominal growth size `size`."""
    block = GROWTH_BLOCK.get(name)
    if block and size >= block:
        return size - size % block
    return size


def bench_targets(names, args, jit):
    """Peak memory of non_local and ccnet at the target shape and over growing H*W.

    The growth table also takes the `--growth` layers; with `--layers none` it holds only
    those (no timing at all), e.g. `--layers none --growth non_local,ccnet,bot`.
    """
    pair = [n for n in ("non_local", "ccnet") if n in names]
    try:
        growth = [n for n in selected_layers(args.growth or "none") if n not in pair]
    except ValueError as error:  # an unknown name: say which option it came from
        raise ValueError(f"--growth: {error}") from None
    if args.no_memory or (len(pair) < 2 and not growth):
        return None
    shapes = SHAPES[args.shapes]
    channels = shapes["target"][-1]
    sizes = sorted(set(shapes["growth"]) | {shapes["target"][1]})
    peaks, measured, settings = {}, {}, {}
    for name in pair + growth:
        measured[name] = {s: growth_size(name, s) for s in sizes}
        print(f"memory of {name} over sizes {list(measured[name].values())} ...", flush=True)
        cases = []
        for s in sizes:
            shape = [1, measured[name][s], measured[name][s], channels]
            cases.append({"name": name, "kwargs": layer_kwargs(name, shape), "shape": shape})
        settings[name] = cases[-1]["kwargs"]
        peaks[name] = dict(zip(sizes, peak_memory(cases, args.precision, jit)))
    if args.vs_timm and import_timm() is not None and "non_local" in pair:
        print(f"memory of timm's NonLocalAttn over sizes {sizes} ...", flush=True)
        kwargs = LAYER_SETTINGS["non_local"][1]
        cases = [
            {"name": "non_local", "kwargs": kwargs, "shape": [1, s, s, channels], "timm": True}
            for s in sizes
        ]
        peaks[TIMM_NON_LOCAL] = dict(zip(sizes, peak_memory(cases, args.precision, jit)))
    return {
        "sizes": sizes,
        "target_size": shapes["target"][1],
        "channels": channels,
        "peaks": peaks,
        "measured": measured,
        "kwargs": settings,
    }


"""
## Models: attention ResNet-50 against ResNet-50
"""


class ChannelScale(keras.layers.Layer):
    """`x * w` with one learnable weight per channel: the rescale every channel gate
    ends with, alone. Its overhead is the floor of SE/ECA-style attention."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, inputs):
        return inputs * keras.ops.cast(self.scale, inputs.dtype)


def _model_attention(name):
    if name == "none":
        return None
    if name == "scale":
        return ChannelScale
    return name


# --vs-timm: the timm model beside ResNet-50 with its attention, built both ways.
TIMM_MODEL = ("seresnet50", "se")


def _timm_train_step(timm, x, y):
    """One SGD training step of timm's model on `x`, `y` (NHWC arrays), like `train_on_batch`."""
    torch = timm.torch
    device = _timm_device(torch)
    model = timm.create_model(TIMM_MODEL[0], pretrained=False, num_classes=1000).to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device)
    labels = torch.from_numpy(y).to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss

    return step, sum(p.numel() for p in model.parameters())


def bench_models(args, jit, timm=None):
    try:
        from keras_attention import models
    except ImportError as error:
        print(f"skipping models: {error}", file=sys.stderr)
        return None
    attentions = [a.strip() for a in args.models.split(",") if a.strip()]
    if "none" not in attentions:
        attentions.insert(0, "none")
    size, batch = args.model_size, args.model_batch
    rng = np.random.default_rng(0)
    x_values = rng.uniform(size=(batch, size, size, 3)).astype("float32")
    y_values = rng.integers(0, 1000, size=(batch,))
    x = keras.ops.convert_to_tensor(x_values)
    y = keras.ops.convert_to_tensor(y_values)
    x1 = x[:1]

    def resnet(attention):
        return models.ResNet50(
            attention=_model_attention(attention),
            input_shape=(size, size, 3),
            classes=1000,
            include_top=True,
        )

    def from_timm(_):
        # Random weights, built offline; normalised inputs as timm's model takes them.
        return models.from_timm(
            TIMM_MODEL[0],
            pretrained=False,
            input_shape=(size, size, 3),
            include_preprocessing=False,
        )

    builds = [(a, a, resnet, True) for a in attentions]
    if timm is not None:
        builds.append((f"from_timm {TIMM_MODEL[0]}", None, from_timm, False))
        if TIMM_MODEL[1] not in attentions:
            builds.append((TIMM_MODEL[1], TIMM_MODEL[1], resnet, False))
    if args.keras_batch_norm:
        builds += [(label + KERAS_BN, a, build, infer) for label, a, build, infer in builds]
    train_calls, infer_calls, params = {}, {}, {}
    for label, attention, build, infer in builds:
        print(f"building {label} ...", flush=True)
        with keras_batch_norm() if label.endswith(KERAS_BN) else contextlib.nullcontext():
            model = build(attention)
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            # Both builders end with logits (a float32 Dense, no softmax), as timm's model.
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        params[label] = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        train_calls[label] = lambda m=model: m.train_on_batch(x, y)
        if infer:
            infer_calls[label] = lambda m=model: m.predict_on_batch(x1)
    timm_label = f"timm {TIMM_MODEL[0]}"
    if timm is not None:
        train_calls[timm_label], params[timm_label] = _timm_train_step(timm, x_values, y_values)
    train = time_interleaved(train_calls, args.warmup, args.model_repeats)
    infer = time_interleaved(infer_calls, args.warmup, 3 * args.model_repeats)
    rows = []
    for label in train_calls:
        row = {
            "attention": label,
            "params": params[label],
            "train_ms": 1000 * statistics.median(train[label]),
            "train_ratio": paired_ratio(train[label], train["none"]),
            "infer_ms": None,
            "infer_ratio": None,
            "in_resnet_table": label in infer_calls,
        }
        if label in infer_calls:
            row["infer_ms"] = 1000 * statistics.median(infer[label])
            row["infer_ratio"] = paired_ratio(infer[label], infer["none"])
        beside_timm = (TIMM_MODEL[1], f"from_timm {TIMM_MODEL[0]}", timm_label)
        if timm_label in train and label.removesuffix(KERAS_BN) in beside_timm:
            row["vs_timm_train"] = paired_ratio(train[label], train[timm_label])
        rows.append(row)
    return rows


"""
## The report
"""


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def _kwargs_text(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def render(env, args, layer_rows, targets, model_rows):
    lines = ["# keras_attention benchmark", ""]
    lines += [f"- {key}: {value}" for key, value in env.items()]
    lines += [
        (
            f"- timing: {args.warmup} warm-up calls, median of {args.repeats} interleaved "
            f"rounds (models: {args.model_repeats}); ratios are medians of per-round ratios"
        ),
        "",
    ]
    if layer_rows:
        lines += [
            "## Layers",
            "",
            (
                f"Baseline: `{BASELINE}` = `Conv2D(C, 1, use_bias=False)` on the same input. "
                f"`{IDENTITY}` returns its input: the cost of the measuring harness alone "
                "(the call, and for fwd+bwd the float32 loss and its gradient). "
                "Peak memory: bytes in use at the call's peak above those in use before it."
            ),
            "",
            (
                "| layer | kwargs | input | fwd ms | fwd x base | fwd+bwd ms | fwd+bwd x base "
                "| peak fwd MiB | x base | peak fwd+bwd MiB | x base |"
            ),
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in layer_rows:
            lines.append(
                f"| {r['layer']} | {_kwargs_text(r['kwargs'])} | {'x'.join(map(str, r['shape']))} "
                f"| {_fmt(r['forward_ms'], '.1f')} | {_fmt(r['forward_ratio'], '.2f')} "
                f"| {_fmt(r['train_ms'], '.1f')} | {_fmt(r['train_ratio'], '.2f')} "
                f"| {_fmt(r['forward_mib'], '.1f')} | {_fmt(r['forward_mib_ratio'], '.2f')} "
                f"| {_fmt(r['train_mib'], '.1f')} | {_fmt(r['train_mib_ratio'], '.2f')} |"
            )
        lines.append("")
    timm_rows = [r for r in layer_rows or [] if "timm" in r]
    if timm_rows:
        lines += _render_vs_timm(timm_rows)
    if targets:
        lines += _render_targets(targets)
    if model_rows:
        lines += [
            "## ResNet-50 with attention",
            "",
            (
                f"Training step: `train_on_batch` on {args.model_batch}x{args.model_size}x"
                f"{args.model_size}x3, SGD with momentum. Inference: `predict_on_batch` on "
                "one image. Ratios are to plain ResNet-50 (`none`) in the same rounds."
            ),
            "",
            (
                "| attention | trainable params | train step ms | x ResNet-50 "
                "| inference ms (batch 1) | x ResNet-50 |"
            ),
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in model_rows:
            if r.get("in_resnet_table", True):
                lines.append(
                    f"| {r['attention']} | {r['params']:,} | {r['train_ms']:.0f} "
                    f"| {r['train_ratio']:.3f} | {r['infer_ms']:.1f} | {r['infer_ratio']:.3f} |"
                )
        lines.append("")
        lines += _render_models_vs_timm(args, [r for r in model_rows if "vs_timm_train" in r])
    return "\n".join(lines)


def _render_models_vs_timm(args, rows):
    if not rows:
        return []
    lines = [
        f"## Training step beside timm's {TIMM_MODEL[0]}",
        "",
        (
            f"The same training step (SGD with momentum, cross-entropy on logits, "
            f"{args.model_batch}x{args.model_size}x{args.model_size}x3, random weights) of "
            f"`ResNet50(attention={TIMM_MODEL[1]!r})`, of `from_timm({TIMM_MODEL[0]!r})` "
            f"and of timm's own model (PyTorch, NCHW, eager), in the same interleaved rounds "
            "as the table above; ours/timm is the median of per-round ratios."
        ),
        "",
        "| model | trainable params | train step ms | ours/timm |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['attention']} | {r['params']:,} | {r['train_ms']:.0f} "
            f"| {r['vs_timm_train']:.3f} |"
        )
    return lines + [""]


def _render_vs_timm(rows):
    lines = [
        "## Against timm",
        "",
        (
            "timm's equivalent module on the same input (NCHW), in the same interleaved "
            "rounds; ours/timm is the median of per-round ratios (below 1: ours is faster)."
        ),
        "",
        (
            "| layer | input | timm module | timm settings | ours fwd ms | timm fwd ms "
            "| ours/timm fwd | ours fwd+bwd ms | timm fwd+bwd ms | ours/timm fwd+bwd |"
        ),
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        settings = r["timm_note"]
        lines.append(
            f"| {r['layer']} | {'x'.join(map(str, r['shape']))} | {r['timm']} | {settings} "
            f"| {_fmt(r['forward_ms'], '.1f')} | {_fmt(r['timm_forward_ms'], '.1f')} "
            f"| {_fmt(r['vs_timm_forward'], '.2f')} | {_fmt(r['train_ms'], '.1f')} "
            f"| {_fmt(r['timm_train_ms'], '.1f')} | {_fmt(r['vs_timm_train'], '.2f')} |"
        )
    return lines + [""]


def _render_targets(targets):
    peaks, size, channels = targets["peaks"], targets["target_size"], targets["channels"]
    lines = ["## CCNet vs non-local: peak memory", ""] if "ccnet" in peaks else []
    nl, cc = peaks.get("non_local", {}).get(size), peaks.get("ccnet", {}).get(size)
    for mode, label in (("forward", "forward"), ("train", "forward+backward")):
        if nl and cc:
            ratio = f"{nl[mode] / cc[mode]:.1f}x" if cc[mode] > 0 else "n/a"
            lines.append(
                f"- {label} at 1x{size}x{size}x{channels}: non_local {nl[mode] / MIB:.1f} MiB, "
                f"ccnet {cc[mode] / MIB:.1f} MiB: non_local / ccnet = **{ratio}** (paper: 11x)"
            )
    timm_peak = peaks.get(TIMM_NON_LOCAL, {}).get(size)
    for mode, label in (("forward", "forward"), ("train", "forward+backward")):
        if nl and timm_peak:
            lines.append(
                f"- {label} at 1x{size}x{size}x{channels}: non_local {nl[mode] / MIB:.1f} MiB, "
                f"timm's NonLocalAttn {timm_peak[mode] / MIB:.1f} MiB"
            )
    lines += _render_growth(targets)
    return lines


def _render_growth(targets):
    """One row per layer: peaks at each size and the growth exponents in H*W."""
    sizes, channels = targets["sizes"], targets["channels"]
    small, large = sizes[-2:]
    header = "".join(f" {s}² fwd MiB | {s}² fwd+bwd MiB |" for s in sizes)
    lines = [
        "",
        f"## Peak memory growth in H*W (batch 1, C={channels})",
        "",
        (
            f"Growth exponent: log(peak at {large}² / peak at {small}²) over "
            "log(ratio of the H*W measured); 1 is linear in H*W, 2 quadratic. Sizes "
            "measured: where a layer's blocks cannot tile the nominal size, the multiple "
            "of its block below it."
        ),
        "",
        "| layer | kwargs at the largest size | sizes measured |"
        + header
        + " growth fwd | growth fwd+bwd |",
        "|---|---|---|" + "---:|" * (2 * len(sizes) + 2),
    ]
    for name, by_size in targets["peaks"].items():
        cells = []
        for s in sizes:
            peak = by_size.get(s)
            cells += [_fmt(peak and peak[m] / MIB, ".1f") for m in ("forward", "train")]
        cells += [_fmt(growth_exponent(targets, name, m), ".2f") for m in ("forward", "train")]
        measured = targets.get("measured", {}).get(name, {})
        kwargs = _kwargs_text(targets.get("kwargs", {}).get(name, {}))
        lines.append(
            f"| {name} | {kwargs} | {', '.join(str(measured.get(s, s)) for s in sizes)} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", _growth_exponents(targets), ""]
    return lines


def growth_exponent(targets, name, mode):
    """Slope of log(peak) against log(H*W measured) between the two largest sizes, or None."""
    small, large = targets["sizes"][-2:]
    by_size = targets["peaks"].get(name, {})
    measured = targets.get("measured", {}).get(name, {})
    a, b = by_size.get(small), by_size.get(large)
    if not (a and b and a[mode] > 0 and b[mode] > 0):
        return None
    area = (measured.get(large, large) / measured.get(small, small)) ** 2
    return float(np.log(b[mode] / a[mode]) / np.log(area))


def _growth_exponents(targets):
    """Forward growth of every layer between the two largest sizes, in one line."""
    parts = []
    for name in targets["peaks"]:
        slope = growth_exponent(targets, name, "forward")
        if slope is not None:
            parts.append(f"{name} ~ (H*W)^{slope:.2f}")
    return "Forward peak growth between the two largest sizes: " + (", ".join(parts) or "n/a")


"""
## Main
"""


def main(argv=None):
    args = parse_args(argv)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Each case is a new tf.function: TF's retracing warnings say nothing here.
        tf.get_logger().setLevel("ERROR")
    threads = pin_threads(args.threads)
    names = selected_layers(args.layers)
    timm = import_timm() if args.vs_timm else None
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(args.precision)
    try:
        jit = resolve_jit(args.jit_compile)
        env = environment(args, jit)
        env["threads"] = ", ".join(f"{k} {v}" for k, v in threads.items())
        if timm is not None:
            env["timm"] = (
                f"timm {timm.__version__}, torch {timm.torch.__version__} on "
                f"{_timm_device(timm.torch)}"
            )
        layer_rows = bench_layers(names, args, jit, timm)
        targets = None if args.skip_targets else bench_targets(names, args, jit)
        model_rows = None if args.skip_models else bench_models(args, jit, timm)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    report = render(env, args, layer_rows, targets, model_rows)
    print(report)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report + "\n")
    return {"env": env, "layers": layer_rows, "targets": targets, "models": model_rows}


if __name__ == "__main__":
    main()
