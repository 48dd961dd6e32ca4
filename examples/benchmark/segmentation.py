"""The segmentation table: DANet and CCNet on ResNet-101 beside their backbone alone.

One training step (SGD with momentum) of the published networks, `DANet(19,
backbone="resnet101s")` and `CCNet(...)` at output stride 8 with every output
the released code trains on (DANet: sum, position and channel logits, equal
weights; CCNet: main and auxiliary, 1 and 0.4), against the step of their
backbone alone (`from_timm("resnet101s", features_only=True, output_stride=8)`,
the mean of its last map as the loss), in the same interleaved rounds: the
heads' share of a step is 1 - backbone / network, per round. With `--vs-timm`,
timm's own dilated resnet101s (PyTorch, eager) trains the same way beside them.
Peak memory: of each step, in a fresh process (`memory.peak_memory`); the heads'
is the network's peak minus the backbone's.
"""

import statistics

import keras
import numpy as np

from .memory import PeakMeter
from .memory import peak_memory
from .references import timm_device
from .timing import paired_ratio
from .timing import time_interleaved

BACKBONE = "resnet101s"  # the papers' (`--seg-backbone` changes it, for smoke runs)
WARMUP = 1  # untimed steps (compilation, first allocations): a 512x512 step takes a minute
CLASSES = 19  # Cityscapes', the papers' main benchmark
OUTPUT_STRIDE = 8
# The released training losses: DANet's SegmentationMultiLosses sums its three outputs;
# CCNet's CriterionDSN weighs the dsn (auxiliary) output 0.4.
LOSS_WEIGHTS = {"danet": [1.0, 1.0, 1.0], "ccnet": [1.0, 0.4]}
NETWORKS = ("backbone", "danet", "ccnet")


def _feature_loss(y_true, y_pred):
    """The mean of the feature map: a loss that trains the backbone alone (`y_true` unused)."""
    return keras.ops.mean(keras.ops.cast(y_pred, "float32"))


def build(network, size, jit, backbone=BACKBONE):
    """A compiled Keras model for `network` ("backbone", "danet", "ccnet") on size x size."""
    from keras_attention import models

    shape = (size, size, 3)
    if network == "backbone":
        model = models.from_timm(
            backbone,
            pretrained=False,
            input_shape=shape,
            features_only=True,
            out_indices=(-1,),
            output_stride=OUTPUT_STRIDE,
        )
        loss, weights = [_feature_loss], None
    else:
        builder = models.DANet if network == "danet" else models.CCNet
        model = builder(
            CLASSES,
            shape,
            backbone=backbone,
            output_stride=OUTPUT_STRIDE,
            pretrained=False,
            outputs="all",
        )
        loss = [keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * len(
            LOSS_WEIGHTS[network]
        )
        weights = LOSS_WEIGHTS[network]
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=loss,
        loss_weights=weights,
        jit_compile=jit,
    )
    return model


def batch(network, size, count, seed=0):
    """Random RGB images in [0, 1] and the step's targets for `network`."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(count, size, size, 3)).astype("float32")
    if network == "backbone":
        return x, [np.zeros((count, 1, 1, 1), "float32")]  # unused by `_feature_loss`
    mask = rng.integers(0, CLASSES, size=(count, size, size)).astype("int32")
    return x, [mask] * len(LOSS_WEIGHTS[network])


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _timm_train_step(timm, x, backbone):
    """timm's dilated backbone, one SGD step on the mean of its last map (as `_feature_loss`)."""
    torch = timm.torch
    device = timm_device(torch)
    model = timm.create_model(
        backbone,
        pretrained=False,
        features_only=True,
        out_indices=(4,),
        output_stride=OUTPUT_STRIDE,
    ).to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model(images)[-1].mean()
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss

    return step, sum(p.numel() for p in model.parameters())


def measure_peaks(spec):
    """Peak bytes of one training step of each network in `spec["cases"]` (the subprocess).

    After `spec["warmup"]` untimed steps, the median over `spec["repeats"]` steps of the
    peak in use during the step above what was in use before it (the weights, the
    optimizer's slots and the batch are not counted).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(1)  # as memory.py's probe
    keras.config.set_dtype_policy(spec["precision"])
    results = []
    for case in spec["cases"]:
        model = build(case["network"], case["size"], spec["jit"], case["backbone"])
        x, y = batch(case["network"], case["size"], case["batch"])
        for _ in range(spec["warmup"]):
            model.train_on_batch(x, y)
        samples = []
        for _ in range(spec["repeats"]):
            with PeakMeter() as meter:
                model.train_on_batch(x, y)
            samples.append(meter.peak)
        results.append({"train": statistics.median(samples)})
        del model
    return results


def bench_segmentation(args, jit, timm=None):
    """Rows of the segmentation table: one per network (and timm's backbone), as above."""
    size, count, backbone = args.seg_size, args.seg_batch, args.seg_backbone
    # Memory first: this process then holds no model while the probe's runs beside it.
    peaks = {network: None for network in NETWORKS}
    if not args.no_memory:
        print("peak memory of each training step (fresh process) ...", flush=True)
        cases = [
            {"network": n, "size": size, "batch": count, "backbone": backbone} for n in NETWORKS
        ]
        measured = peak_memory(
            cases,
            args.precision,
            jit,
            warmup=WARMUP,
            repeats=1,
            probe=(__name__, "measure_peaks"),
        )
        peaks = dict(zip(NETWORKS, measured))
    calls, params = {}, {}
    for network in NETWORKS:
        print(f"building {network} ({backbone}, {size}x{size}) ...", flush=True)
        model = build(network, size, jit, backbone)
        x, y = batch(network, size, count)
        params[network] = trainable_count(model)
        calls[network] = lambda m=model, x=x, y=y: m.train_on_batch(x, y)
    if timm is not None:
        x, _ = batch("backbone", size, count)
        label = f"timm {backbone}"
        calls[label], params[label] = _timm_train_step(timm, x, backbone)
    print(f"timing {len(calls)} training steps x {args.seg_repeats} rounds ...", flush=True)
    times = time_interleaved(calls, WARMUP, args.seg_repeats)
    backbone_peak = (peaks["backbone"] or {}).get("train")
    rows = []
    for label, samples in times.items():
        peak = (peaks.get(label) or {}).get("train")
        head = label in ("danet", "ccnet")
        rows.append(
            {
                "network": label,
                "params": params[label],
                "train_ms": 1000 * statistics.median(samples),
                "x_backbone": paired_ratio(samples, times["backbone"]),
                # 1 - backbone / network, per round: the heads' share of the step.
                "heads_share": 1 - paired_ratio(times["backbone"], samples) if head else None,
                "peak_mib": None if peak is None else peak / 2**20,
                "heads_peak_mib": (
                    (peak - backbone_peak) / 2**20
                    if head and peak is not None and backbone_peak is not None
                    else None
                ),
            }
        )
    return rows
