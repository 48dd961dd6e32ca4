"""The command line: the flags, and `main`, which runs the tables they ask for."""

import argparse
import os

import keras

from .layers import bench_layers
from .machine import environment
from .machine import pin_threads
from .machine import resolve_jit
from .memory import PeakMeter
from .models import bench_models
from .references import import_timm
from .references import timm_device
from .report import render
from .segmentation import BACKBONE as SEG_BACKBONE
from .segmentation import bench_segmentation
from .settings import SHAPES
from .settings import selected_layers
from .targets import bench_targets
from .targets import bench_volume_targets
from .volumes import bench_volumes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m examples.benchmark",
        description=(
            "Time (forward, forward+backward) and peak memory of every registered "
            "attention layer against a 1x1-convolution baseline, the CCNet/non-local "
            "memory targets, and the training step of attention ResNet-50s against "
            "plain ResNet-50. The backend is KERAS_BACKEND's."
        ),
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
    parser.add_argument(
        "--volumes",
        action="store_true",
        help="also time the 3-D form of every selected layer that has one on 5-D inputs, "
        "a clip (2,8,28,28,256) and a volume (1,32,32,32,64) ('small': tiny ones), against "
        "a 1x1x1 convolution and beside MONAI's, timm-3d's, mmcv's or fvcore's module where "
        "one exists (PyTorch, same rounds); with the targets, the peak memory of 3-D "
        "non_local and ccnet over cubes of growing D*H*W; layers without a 3-D form are "
        "listed with why",
    )
    parser.add_argument(
        "--volume-inputs",
        default="clip,volume",
        help="with --volumes: which of the two 5-D inputs to time, 'clip', 'volume', "
        "'clip,volume' (default), or 'none' (only the 3-D memory growth)",
    )
    parser.add_argument(
        "--max-attention-gib",
        type=float,
        default=1.0,
        help="with --volumes: do not run a layer at a 5-D shape where its float32 attention "
        "matrix over all position pairs (self-attention, DANet's position attention, "
        "non-local) would exceed this many GiB; its row says so (default: 1)",
    )
    parser.add_argument(
        "--max-forward-seconds",
        type=float,
        default=None,
        help="with --volumes: leave out of the timed rounds a layer whose second forward call "
        "(after compilation) takes longer than this at a 5-D shape, e.g. GlobalAttention's "
        "7x7x7 convolutions on the 256-channel clip on a small CPU; its row says so "
        "(default: no limit)",
    )
    parser.add_argument(
        "--skip-images",
        action="store_true",
        help="skip the 2-D layers table (e.g. with --volumes: only the 3-D forms), and the "
        "2-D memory targets",
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
        "--segmentation",
        action="store_true",
        help="also time one training step of DANet and CCNet on a dilated ResNet-101 "
        "(output stride 8, every released output) beside their backbone alone, in the same "
        "rounds (the heads' share of the step), and each step's peak memory in a fresh "
        "process; with --vs-timm timm's dilated backbone (PyTorch) too",
    )
    parser.add_argument(
        "--seg-size",
        type=int,
        default=None,
        help="input height and width of --segmentation (default: 512; 64 with --shapes small)",
    )
    parser.add_argument(
        "--seg-batch",
        type=int,
        default=None,
        help="batch size of --segmentation (default: 2; 1 with --shapes small)",
    )
    parser.add_argument(
        "--seg-repeats",
        type=int,
        default=None,
        help="timed rounds of --segmentation, median reported (default: 3; 1 with --shapes small)",
    )
    parser.add_argument(
        "--seg-backbone",
        default=SEG_BACKBONE,
        help="the from_timm name of --segmentation's backbone (default: resnet101s, the "
        "papers'; e.g. resnet18 for a quick check)",
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
    defaults = ("model_size", "model_batch", "warmup", "repeats", "model_repeats", "models")
    for flag in defaults + ("seg_size", "seg_batch", "seg_repeats"):
        if getattr(args, flag) is None:
            setattr(args, flag, SHAPES[args.shapes][flag])
    inputs = [v.strip() for v in args.volume_inputs.split(",") if v.strip()]
    unknown = sorted(set(inputs) - {"clip", "volume"})
    if inputs != ["none"] and (unknown or not inputs):
        parser.error(
            f"--volume-inputs takes 'clip', 'volume' or 'none', not {args.volume_inputs!r}"
        )
    args.volume_inputs = [] if inputs == ["none"] else inputs
    if args.max_attention_gib <= 0 or (args.max_forward_seconds or 1) <= 0:
        parser.error("--max-attention-gib and --max-forward-seconds must be positive")
    positive = ("warmup", "repeats", "model_batch", "model_size", "model_repeats", "threads")
    for flag in positive + ("seg_size", "seg_batch", "seg_repeats"):
        if getattr(args, flag) < (0 if flag == "warmup" else 1):
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    return args


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
        memory = "not measured" if args.no_memory else PeakMeter().source
        env = environment(args, jit, memory)
        env["threads"] = ", ".join(f"{k} {v}" for k, v in threads.items())
        if timm is not None:
            env["timm"] = (
                f"timm {timm.__version__}, torch {timm.torch.__version__} on "
                f"{timm_device(timm.torch)}"
            )
        images = not args.skip_images
        layer_rows = bench_layers(names, args, jit, timm) if images else []
        targets = None if args.skip_targets or not images else bench_targets(names, args, jit)
        volumes = bench_volumes(names, args, jit) if args.volumes and args.volume_inputs else None
        volume_targets = None
        if args.volumes and not args.skip_targets:
            volume_targets = bench_volume_targets(names, args, jit)
        model_rows = None if args.skip_models else bench_models(args, jit, timm)
        seg_rows = bench_segmentation(args, jit, timm) if args.segmentation else None
    finally:
        keras.config.set_dtype_policy(previous_policy)
    report = render(env, args, layer_rows, targets, model_rows, volumes, volume_targets, seg_rows)
    print(report)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report + "\n")
    return {
        "env": env,
        "layers": layer_rows,
        "targets": targets,
        "models": model_rows,
        "volumes": volumes,
        "volume_targets": volume_targets,
        "segmentation": seg_rows,
    }
