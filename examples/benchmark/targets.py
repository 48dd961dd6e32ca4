"""The memory targets: criss-cross vs non-local, and peak memory's growth in H*W and D*H*W."""

import numpy as np

from .memory import peak_memory
from .references import import_timm
from .settings import LAYER_SETTINGS
from .settings import SHAPES
from .settings import TIMM_NON_LOCAL
from .settings import growth_size
from .settings import has_volume_form
from .settings import layer_kwargs
from .settings import no_volume_reason
from .settings import selected_layers
from .settings import too_large


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


def bench_volume_targets(names, args, jit):
    """Peak memory of non_local and ccnet's 3-D forms over cubes D = H = W of growing side.

    A layer of the pair without a 3-D form yet gets a note instead of a row (criss-cross
    along depth, height and width may land after non-local's).
    """
    pair = [n for n in ("non_local", "ccnet") if n in names]
    if args.no_memory or not pair:
        return None
    shapes = SHAPES[args.shapes]
    sides, channels = shapes["volume_growth"], shapes["volume_channels"]
    peaks, settings, notes, not_run = {}, {}, {}, {}
    for name in pair:
        if not has_volume_form(name):
            notes[name] = no_volume_reason(name)
            continue
        # The 2-D table's arguments: non-local without sub-sampling, quadratic in D*H*W.
        settings[name] = dict(LAYER_SETTINGS[name][1])
        shapes_of = {s: [1, s, s, s, channels] for s in sides}
        for s in sides:
            why = too_large(name, settings[name], shapes_of[s], args.max_attention_gib)
            if why:
                not_run.setdefault(name, {})[s] = why
        run = [s for s in sides if s not in not_run.get(name, {})]
        print(f"memory of {name}'s 3-D form over cubes {run} ...", flush=True)
        cases = [{"name": name, "kwargs": settings[name], "shape": shapes_of[s]} for s in run]
        peaks[name] = dict(zip(run, peak_memory(cases, args.precision, jit)))
    return {
        "sides": sides,
        "channels": channels,
        "peaks": peaks,
        "kwargs": settings,
        "notes": notes,
        "not_run": not_run,
    }


def volume_growth_sides(targets, name):
    """The two largest cube sides at which `name`'s peak was measured, or None."""
    measured = [s for s in targets["sides"] if targets["peaks"].get(name, {}).get(s)]
    return tuple(measured[-2:]) if len(measured) >= 2 else None


def volume_growth_exponent(targets, name, mode):
    """Slope of log(peak) against log(D*H*W) between the two largest cubes measured, or None."""
    sides = volume_growth_sides(targets, name)
    if sides is None:
        return None
    small, large = sides
    a, b = targets["peaks"][name][small], targets["peaks"][name][large]
    if not (a[mode] > 0 and b[mode] > 0):
        return None
    return float(np.log(b[mode] / a[mode]) / np.log((large / small) ** 3))
