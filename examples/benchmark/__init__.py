"""
Title: The speed and memory cost of every attention mechanism
Author: keras_attention contributors
Date created: 2026/11/25
Last modified: 2026/12/06
Description: Time and peak memory of every attention layer and attention ResNet-50, vs baselines.
Accelerator: CPU or GPU

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
* **Volumes and clips** (`--volumes`). The 3-D form of every selected layer that has one
  (`3 in cls.spatial_ranks`) on a clip `(2, 8, 28, 28, 256)` and a volume
  `(1, 32, 32, 32, 64)`, against a 1x1x1 convolution and beside MONAI's, timm-3d's, mmcv's
  or fvcore's module for the same work where one exists (same rounds); with the targets,
  the peak memory of 3-D non-local and criss-cross over cubes of growing D*H*W. Layers
  without a 3-D form are listed with their class's `no_volume_reason`. `--skip-images`
  leaves out the 2-D tables, `--volume-inputs` picks the clip, the volume or neither (the
  memory growth alone). A case whose N x N attention matrix would exceed
  `--max-attention-gib`, or whose forward call takes longer than `--max-forward-seconds`,
  is not run and its row says why.
* **DANet and CCNet** (`--segmentation`). One training step of the published networks,
  `DANet`/`CCNet(19, backbone="resnet101s", output_stride=8, outputs="all")` with the
  released losses, at 512x512, batch 2 (`--seg-size`, `--seg-batch`), beside their
  backbone alone (`from_timm("resnet101s", features_only=True, output_stride=8)`) in the
  same rounds: the heads' share of the step; and each step's peak memory (the heads':
  the network's minus the backbone's). With `--vs-timm`, timm's dilated resnet101s too.
* **Before/after the fused BatchNormalization** (`--keras-batch-norm`). Every layer and
  model that holds the package's BatchNormalization (`ops.batch_norm`'s backend kernels)
  is timed a second time, in the same rounds, built with Keras's own layer in its place.

Run it with the backend you care about, e.g.
`KERAS_BACKEND=jax python -m examples.benchmark --precision mixed_bfloat16 --output jax.md`
(or `python examples/benchmark ...`: the same flags).

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

### The modules

`cli` (flags and `main`), `settings` (the layers' arguments and the shape sets), `machine`
(device, threads, the environment record), `calls` (compiled calls per backend), `timing`
(interleaved rounds), `memory` (peak memory in fresh processes), `references` (timm's
equivalent modules, one table), `volume_references` (the 3-D ones), then one module per
section of the report: `layers`, `volumes`, `targets`, `models`, `segmentation`, and `report`
(the Markdown).
"""

import os

# On a GPU, JAX would otherwise take 75% of its memory up front, starving timm's PyTorch
# beside it (--vs-timm); set here, before any module of the package loads JAX. The
# peak-memory figures are unaffected.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
