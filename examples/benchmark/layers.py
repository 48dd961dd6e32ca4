"""The layers table: every layer timed against a 1x1 convolution, in the same rounds."""

import gc
import statistics

from .calls import KERAS_BN
from .calls import compiled_calls
from .calls import holds_fused_batch_norm
from .calls import keras_batch_norm
from .calls import make_layer
from .calls import random_input
from .memory import peak_memory
from .references import REFERENCES
from .references import timm_calls
from .references import timm_module
from .settings import BASELINE
from .settings import IDENTITY
from .settings import MIB
from .settings import SHAPES
from .settings import layer_family
from .settings import layer_kwargs
from .timing import paired_ratio
from .timing import time_interleaved


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
            if timm is not None and name in REFERENCES:
                module, note = timm_module(timm, name, layer, shape)
                timm_names[name] = (REFERENCES[name].label, note)
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
            if label != name:  # the Keras-BN twin: the fused layer's time over its own
                for mode in ("forward", "train"):
                    row[f"fused_vs_keras_bn_{mode}"] = paired_ratio(
                        samples[(name, mode)], samples[(label, mode)]
                    )
            if name in timm_names:
                row["timm"], row["timm_note"] = timm_names[name]
                row["timm_note"] = row["timm_note"] or REFERENCES[name].settings
                for mode in ("forward", "train"):
                    theirs = samples.get((name, f"timm {mode}"))
                    row[f"timm_{mode}_ms"] = theirs and 1000 * statistics.median(theirs)
                    row[f"vs_timm_{mode}"] = theirs and paired_ratio(samples[(label, mode)], theirs)
            rows.append(row)
    return rows
