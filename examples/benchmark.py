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
import gc
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import keras
import numpy as np

import keras_attention

BASELINE = "conv1x1"
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
}

# --shapes: the paper-scale shapes, or tiny ones for smoke tests.
SHAPES = {
    "standard": {
        "channel": [(32, 56, 56, 256)],
        "spatial": [(8, 28, 28, 512), (1, 56, 56, 512)],
        "target": (1, 97, 97, 512),
        "growth": [14, 28, 56, 97],
    },
    "small": {
        "channel": [(2, 8, 8, 32)],
        "spatial": [(1, 6, 6, 32)],
        "target": (1, 9, 9, 32),
        "growth": [5, 9],
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
        "(1,56,56,512) for spatial attention, 97x97x512 for the targets; 'small': tiny "
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
        "--warmup", type=int, default=2, help="untimed calls per case, compilation included"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed rounds per layer case (median reported)"
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory subprocesses (memory columns then read n/a)",
    )
    parser.add_argument(
        "--skip-targets",
        action="store_true",
        help="skip the CCNet vs non-local memory target and the memory-growth table",
    )
    parser.add_argument("--skip-models", action="store_true", help="skip the ResNet-50 comparison")
    parser.add_argument(
        "--models",
        default="none,scale,se,eca,cbam,sk",
        help="attentions for keras_attention.models.ResNet50(attention=...): short "
        "names, 'none' (plain ResNet-50, the baseline) and 'scale' (a bare learnable "
        "per-channel multiply, the floor of channel gating)",
    )
    parser.add_argument(
        "--model-batch", type=int, default=16, help="batch size of the timed training step"
    )
    parser.add_argument(
        "--model-size", type=int, default=224, help="input height and width of the models"
    )
    parser.add_argument(
        "--model-repeats", type=int, default=9, help="timed rounds per model (median reported)"
    )
    parser.add_argument(
        "--output", default=None, help="also write the Markdown report to this file"
    )
    args = parser.parse_args(argv)
    for flag in ("warmup", "repeats", "model_batch", "model_size", "model_repeats"):
        if getattr(args, flag) < (0 if flag == "warmup" else 1):
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    return args


def selected_layers(spec):
    available = keras_attention.available()
    if spec == "all":
        return available
    if spec == "none":
        return []
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise ValueError(f"Unknown --layers {unknown}. Available: {', '.join(available)}")
    return names


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


def environment(args, jit):
    backend = keras.backend.backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    lib_version = __import__(module).__version__ if module else "?"
    return {
        "device": _accelerator() or f"CPU: {_cpu_name()}, {os.cpu_count()} cores",
        "backend": f"{backend} {lib_version}",
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


def random_input(shape, seed=0):
    """A normal input in the policy's compute dtype, created on the default device."""
    x = keras.random.normal(shape, seed=seed)
    return keras.ops.cast(x, keras.config.dtype_policy().compute_dtype)


def _sum_loss(outputs):
    return keras.ops.sum(keras.ops.cast(outputs, "float32"))


def compiled_calls(layer, x, jit):
    # Build on a tiny crop: build() depends only on the channel count.
    layer(x[:1, :4, :4])
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

    def __init__(self):
        self.backend = keras.backend.backend()
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
        peaks = {}
        for mode, call in (("forward", forward), ("train", train)):
            for _ in range(spec["warmup"]):
                call()
            samples = []
            for _ in range(spec["repeats"]):
                with PeakMeter() as meter:
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
    batches = [cases] if meter.resettable else [[case] for case in cases]
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
## Layers
"""


def layer_cases(names, shapes):
    """(shape, [(name, kwargs), ...]) groups: the baseline, the identity, then the layers."""
    groups = []
    for family in ("channel", "spatial"):
        members = [n for n in names if LAYER_SETTINGS.get(n, ("spatial", {}))[0] == family]
        for shape in shapes[family] if members else []:
            cases = [(BASELINE, {}), (IDENTITY, {})] + [
                (n, LAYER_SETTINGS.get(n, ("spatial", {}))[1]) for n in members
            ]
            groups.append((shape, cases))
    return groups


def bench_layers(names, args, jit):
    rows = []
    for shape, cases in layer_cases(names, SHAPES[args.shapes]):
        print(f"timing {len(cases)} cases at {shape} ...", flush=True)
        x = random_input(shape)
        calls = {}
        for name, kwargs in cases:
            forward, train = compiled_calls(make_layer(name, kwargs, shape[-1]), x, jit)
            calls[(name, "forward")] = forward
            calls[(name, "train")] = train
        samples = time_interleaved(calls, args.warmup, args.repeats)
        del calls, x
        gc.collect()
        peaks = [None] * len(cases)
        if not args.no_memory:
            memory_cases = [{"name": n, "kwargs": k, "shape": list(shape)} for n, k in cases]
            peaks = peak_memory(memory_cases, args.precision, jit)
        base_peak = peaks[0] or {}
        for (name, kwargs), peak in zip(cases, peaks):
            row = {"layer": name, "kwargs": kwargs, "shape": shape}
            for mode in ("forward", "train"):
                own, base = samples[(name, mode)], samples[(BASELINE, mode)]
                row[f"{mode}_ms"] = 1000 * statistics.median(own)
                row[f"{mode}_ratio"] = paired_ratio(own, base)
                row[f"{mode}_mib"] = peak[mode] / MIB if peak else None
                row[f"{mode}_mib_ratio"] = (
                    peak[mode] / base_peak[mode] if peak and base_peak.get(mode) else None
                )
            rows.append(row)
    return rows


"""
## Targets: criss-cross vs non-local memory
"""


def bench_targets(names, args, jit):
    """Peak memory of non_local and ccnet at the target shape and over growing H*W."""
    pair = [n for n in ("non_local", "ccnet") if n in names]
    if len(pair) < 2 or args.no_memory:
        return None
    shapes = SHAPES[args.shapes]
    channels = shapes["target"][-1]
    sizes = sorted(set(shapes["growth"]) | {shapes["target"][1]})
    peaks = {}
    for name in pair:
        print(f"memory of {name} over sizes {sizes} ...", flush=True)
        kwargs = LAYER_SETTINGS[name][1]
        cases = [{"name": name, "kwargs": kwargs, "shape": [1, s, s, channels]} for s in sizes]
        peaks[name] = dict(zip(sizes, peak_memory(cases, args.precision, jit)))
    return {
        "sizes": sizes,
        "target_size": shapes["target"][1],
        "channels": channels,
        "peaks": peaks,
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


def bench_models(args, jit):
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
    x = keras.ops.convert_to_tensor(rng.uniform(size=(batch, size, size, 3)).astype("float32"))
    y = keras.ops.convert_to_tensor(rng.integers(0, 1000, size=(batch,)))
    x1 = x[:1]
    train_calls, infer_calls, params = {}, {}, {}
    for attention in attentions:
        print(f"building ResNet-50 attention={attention} ...", flush=True)
        model = models.ResNet50(
            attention=_model_attention(attention),
            input_shape=(size, size, 3),
            classes=1000,
            include_top=True,
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss="sparse_categorical_crossentropy",
            jit_compile=jit,
        )
        params[attention] = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        train_calls[attention] = lambda m=model: m.train_on_batch(x, y)
        infer_calls[attention] = lambda m=model: m.predict_on_batch(x1)
    train = time_interleaved(train_calls, args.warmup, args.model_repeats)
    infer = time_interleaved(infer_calls, args.warmup, 3 * args.model_repeats)
    rows = []
    for attention in attentions:
        rows.append(
            {
                "attention": attention,
                "params": params[attention],
                "train_ms": 1000 * statistics.median(train[attention]),
                "train_ratio": paired_ratio(train[attention], train["none"]),
                "infer_ms": 1000 * statistics.median(infer[attention]),
                "infer_ratio": paired_ratio(infer[attention], infer["none"]),
            }
        )
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
            lines.append(
                f"| {r['attention']} | {r['params']:,} | {r['train_ms']:.0f} "
                f"| {r['train_ratio']:.3f} | {r['infer_ms']:.1f} | {r['infer_ratio']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _render_targets(targets):
    peaks, size, channels = targets["peaks"], targets["target_size"], targets["channels"]
    lines = ["## CCNet vs non-local: peak memory", ""]
    nl, cc = peaks["non_local"].get(size), peaks["ccnet"].get(size)
    for mode, label in (("forward", "forward"), ("train", "forward+backward")):
        if nl and cc:
            ratio = f"{nl[mode] / cc[mode]:.1f}x" if cc[mode] > 0 else "n/a"
            lines.append(
                f"- {label} at 1x{size}x{size}x{channels}: non_local {nl[mode] / MIB:.1f} MiB, "
                f"ccnet {cc[mode] / MIB:.1f} MiB: non_local / ccnet = **{ratio}** (paper: 11x)"
            )
    lines += [
        "",
        (
            "| H=W | H*W | non_local fwd MiB | non_local fwd+bwd MiB "
            "| ccnet fwd MiB | ccnet fwd+bwd MiB |"
        ),
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in targets["sizes"]:
        cells = []
        for name in ("non_local", "ccnet"):
            peak = peaks[name].get(s)
            cells += [_fmt(peak and peak[m] / MIB, ".1f") for m in ("forward", "train")]
        lines.append(f"| {s} | {s * s} | " + " | ".join(cells) + " |")
    lines += ["", _growth_exponents(targets), ""]
    return lines


def _growth_exponents(targets):
    """Slope of log(peak) against log(H*W) between the two largest sizes."""
    small, large = targets["sizes"][-2:]
    parts = []
    for name, by_size in targets["peaks"].items():
        a, b = by_size.get(small), by_size.get(large)
        if a and b and a["forward"] > 0 and b["forward"] > 0:
            slope = np.log(b["forward"] / a["forward"]) / np.log((large / small) ** 2)
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
    names = selected_layers(args.layers)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(args.precision)
    try:
        jit = resolve_jit(args.jit_compile)
        env = environment(args, jit)
        layer_rows = bench_layers(names, args, jit)
        targets = None if args.skip_targets else bench_targets(names, args, jit)
        model_rows = None if args.skip_models else bench_models(args, jit)
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
