"""The volumes table (`--volumes`): every layer with a 3-D form at a clip and a volume shape.

Each layer's 5-D form is timed against a 1x1x1 convolution and beside its 3-D references
(MONAI, timm-3d, mmcv, fvcore: `volume_references`) in the same interleaved rounds. Layers
whose class has no 3-D form (3 not in its `spatial_ranks`) are skipped, with the class's
`no_volume_reason` in the report. A layer whose attention matrix over all position pairs
would exceed `--max-attention-gib` at a shape is not run there, nor one whose forward call
takes longer than `--max-forward-seconds` (to keep a run on a small CPU feasible): their
rows say so.
"""

import gc
import statistics
import time
import types

from .calls import compiled_calls
from .calls import make_layer
from .calls import random_input
from .references import timm_calls
from .settings import BASELINE
from .settings import IDENTITY
from .settings import SHAPES
from .settings import has_volume_form
from .settings import no_volume_reason
from .settings import too_large
from .settings import volume_kwargs
from .timing import paired_ratio
from .timing import time_interleaved
from .volume_references import VOLUME_REFERENCES
from .volume_references import import_library
from .volume_references import volume_module


def split_by_volume_form(names):
    """The names whose class has a 3-D form, and {name: why not} for the others."""
    volume_names = [n for n in names if has_volume_form(n)]
    skipped = {n: no_volume_reason(n) for n in names if n not in volume_names}
    return volume_names, skipped


def _reference_calls(entry, layer, x, shape):
    """(forward, train) of `entry`'s module built from `layer`, or (None, why not)."""
    torch, note = import_library(entry.reference)
    if torch is None:
        return None, note
    module, note = volume_module(entry, layer, shape)
    if module is None:
        return None, note
    forward, train = timm_calls(types.SimpleNamespace(torch=torch), module, x)
    try:  # a module that builds but cannot run this input is reported, not timed
        train()
    except Exception as error:  # noqa: BLE001
        return None, " ".join(f"fails: {type(error).__name__}: {error}".split())
    return (forward, train), None


def _too_slow(forward, limit):
    """Why a case is not timed: its second forward call (the first compiles) took more
    than `limit` seconds; None when it did not, or when there is no limit."""
    if limit is None:
        return None
    forward()
    start = time.perf_counter()
    forward()
    seconds = time.perf_counter() - start
    if seconds <= limit:
        return None
    return (
        f"not timed: one forward call took {seconds:.0f} s on this machine "
        f"(--max-forward-seconds {limit:g})"
    )


def bench_volumes(names, args, jit):
    """Rows of the volumes table (a case not run at a shape, too large or failing, is a row
    with `not_run`: why), the layers skipped (no 3-D form) with why, and the failures."""
    volume_names, skipped = split_by_volume_form(names)
    rows, failed = [], {}
    if not volume_names:
        return {"rows": rows, "skipped": skipped, "failed": failed}
    for label, shape in SHAPES[args.shapes]["volumes"].items():
        if label not in args.volume_inputs:
            continue
        cases = [(BASELINE, {}), (IDENTITY, {})]
        cases += [(n, volume_kwargs(n, shape[-1])) for n in volume_names]
        print(f"timing {len(cases)} 3-D cases at the {label} {shape} ...", flush=True)
        x = random_input(shape)
        calls, references, not_run = {}, {}, {}
        for name, kwargs in cases:
            not_run[name] = too_large(name, kwargs, shape, args.max_attention_gib)
            if not_run[name]:
                continue
            layer = make_layer(name, kwargs, shape[-1], rank=3)
            try:
                calls[(name, "forward")], calls[(name, "train")] = compiled_calls(layer, x, jit)
            except Exception as error:  # noqa: BLE001 (a 3-D form failing at this shape)
                not_run[name] = " ".join(f"fails: {type(error).__name__}: {error}".split())[:300]
                failed[f"{name} at the {label}"] = not_run[name]
                continue
            if name not in (BASELINE, IDENTITY):  # the baseline is always timed
                not_run[name] = _too_slow(calls[(name, "forward")], args.max_forward_seconds)
            if not_run[name]:
                del calls[(name, "forward")], calls[(name, "train")]
                continue
            for entry in VOLUME_REFERENCES.get(name, ()):
                pair, note = _reference_calls(entry, layer, x, shape)
                references.setdefault(name, []).append((entry, note))
                if pair is not None:
                    calls[(name, entry.reference, "forward")] = pair[0]
                    calls[(name, entry.reference, "train")] = pair[1]
        samples = time_interleaved(calls, args.warmup, args.repeats)
        del calls, x
        gc.collect()
        for name, kwargs in cases:
            row = {"layer": name, "kwargs": kwargs, "shape": shape, "label": label}
            if not_run[name]:  # in the table with why, not dropped
                rows.append({**row, "not_run": not_run[name], "references": []})
                continue
            for mode in ("forward", "train"):
                own = samples[(name, mode)]
                row[f"{mode}_ms"] = 1000 * statistics.median(own)
                row[f"{mode}_ratio"] = paired_ratio(own, samples[(BASELINE, mode)])
            row["references"] = [
                _reference_row(entry, note, samples, name)
                for entry, note in references.get(name, [])
            ]
            rows.append(row)
    return {"rows": rows, "skipped": skipped, "failed": failed}


def _reference_row(entry, note, samples, name):
    ref = {
        "library": entry.reference,
        "module": entry.label,
        "settings": entry.settings,
        "note": note,
    }
    for mode in ("forward", "train"):
        theirs = samples.get((name, entry.reference, mode))
        ref[f"{mode}_ms"] = theirs and 1000 * statistics.median(theirs)
        ref[f"vs_{mode}"] = theirs and paired_ratio(samples[(name, mode)], theirs)
    return ref
