"""The models table: attention ResNet-50s against plain ResNet-50 (and timm's seresnet50)."""

import contextlib
import statistics
import sys

import keras
import numpy as np

from .calls import KERAS_BN
from .calls import keras_batch_norm
from .references import timm_device
from .timing import paired_ratio
from .timing import time_interleaved


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
    device = timm_device(torch)
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
        if label.endswith(KERAS_BN):
            row["fused_vs_keras_bn_train"] = paired_ratio(
                train[label.removesuffix(KERAS_BN)], train[label]
            )
        if label in infer_calls:
            row["infer_ms"] = 1000 * statistics.median(infer[label])
            row["infer_ratio"] = paired_ratio(infer[label], infer["none"])
        beside_timm = (TIMM_MODEL[1], f"from_timm {TIMM_MODEL[0]}", timm_label)
        if timm_label in train and label.removesuffix(KERAS_BN) in beside_timm:
            row["vs_timm_train"] = paired_ratio(train[label], train[timm_label])
        rows.append(row)
    return rows
