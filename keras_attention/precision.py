"""Choosing the mixed-precision policy for the hardware at hand.

`"auto"` picks by what was measured to train fastest:

- an NVIDIA GPU: `mixed_float16` (tensor cores; every generation has them);
- a CPU with bfloat16 instructions (`avx512_bf16` or `amx_bf16` in
  /proc/cpuinfo): `mixed_bfloat16`. On the 2-core AMD EPYC (AVX512-BF16) of
  the development machines, TensorFlow (XLA, Keras's default) trained the
  examples' CBAM `AttentionCNN` on the digits with 7-10% less CPU time per
  epoch than under float32, and a version twice as wide with 24% less;
  without XLA the two were even;
- any other CPU: `float32`. CPUs have no fast float16 arithmetic: the same
  CNN took 5.5x the CPU time of float32 under `mixed_float16`;
- volumes and clips (`spatial_rank=3`) on TensorFlow's CPU: `float32`, even
  with bfloat16 instructions. TensorFlow 2.21's oneDNN kernels for bfloat16
  Conv3D gradients are not sound (a 3-D U-Net's weights were NaN after one
  training step; 7x7x7 kernels crashed the process), and through XLA the
  video example's bfloat16 Conv3Ds took 16x the time of float32 without XLA.
"""

import keras

from keras_attention.cpu import cpu_flags

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
SPATIAL_RANKS = (2, 3)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(flags=None):
    """Whether the CPU has bfloat16 arithmetic instructions."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def has_gpu():
    """Whether the current Keras backend sees a GPU."""
    if keras.backend.backend() == "torch":  # keras.distribution has no torch backend
        import torch

        return torch.cuda.is_available()
    return any(device.startswith("gpu") for device in keras.distribution.list_devices())


def choose_policy(precision="auto", spatial_rank=2):
    """The dtype policy name for `precision` ("auto" resolved for this machine).

    Args:
        precision: one of `PRECISIONS`; an explicit policy is returned as is.
        spatial_rank: 2 for a model of images, 3 for one of volumes or clips
            (3-D convolutions). With 3, "auto" is float32 on TensorFlow's CPU,
            where bfloat16 Conv3D gradients are not sound (see the module
            docstring).

    Returns:
        A Keras dtype policy name.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {PRECISIONS}. Received: precision={precision!r}"
        )
    if spatial_rank not in SPATIAL_RANKS or isinstance(spatial_rank, bool):
        raise ValueError(
            f"`spatial_rank` must be one of {SPATIAL_RANKS}. Received: spatial_rank={spatial_rank!r}"
        )
    if precision != "auto":
        return precision
    if has_gpu():
        return "mixed_float16"
    if not cpu_has_bf16() or (spatial_rank == 3 and keras.backend.backend() == "tensorflow"):
        return "float32"
    return "mixed_bfloat16"


def set_precision(precision="auto", spatial_rank=2):
    """Sets Keras's global dtype policy from `precision` and returns its name.

    `spatial_rank` as in `choose_policy`: 3 for models of volumes or clips.
    """
    policy = choose_policy(precision, spatial_rank)
    keras.config.set_dtype_policy(policy)
    return policy
