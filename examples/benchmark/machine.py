"""The machine and the run's environment: device, CPU threads, versions, device sync."""

import os
import platform

import keras
import numpy as np

import keras_attention


def resolve_jit(flag):
    """True/False for the compiled calls: Keras's own rule when 'auto'."""
    if flag != "auto":
        return flag == "true"
    return keras.backend.backend() == "jax" or accelerator() is not None


def accelerator():
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


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def onednn_note(backend):
    """Whether TensorFlow runs oneDNN on this CPU: its convolutions, SK's above all, depend on it."""
    if backend != "tensorflow" or accelerator() is not None:
        return ""
    from keras_attention.models._common import channels_first_runs

    # Only oneDNN gives TensorFlow an NCHW convolution on a CPU.
    note = ", oneDNN on" if channels_first_runs() else ", oneDNN off"
    # The benchmark measures TensorFlow's default: say when the user's variable overrode it.
    forced = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return note if forced is None else f"{note} (TF_ENABLE_ONEDNN_OPTS={forced})"


def environment(args, jit, memory):
    """The run's record: device, backend, precision, XLA, `memory` (what peaks count), versions."""
    backend = keras.backend.backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    lib_version = __import__(module).__version__ if module else "?"
    return {
        "device": accelerator() or f"CPU: {cpu_name()}, {os.cpu_count()} cores",
        "backend": f"{backend} {lib_version}" + onednn_note(backend),
        "precision": args.precision,
        "jit_compile": jit,
        "peak memory": memory,
        "versions": f"python {platform.python_version()}, keras {keras.__version__}, "
        f"numpy {np.__version__}, keras_attention {keras_attention.__version__}",
    }


def sync():
    """Waits for queued device work (GPU backends run asynchronously)."""
    if accelerator() is None:
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.test.experimental.sync_devices()
    elif backend == "torch":
        import torch

        torch.cuda.synchronize()


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
