"""The memory targets: criss-cross vs non-local, and peak memory's growth in H*W."""

import numpy as np

from .memory import peak_memory
from .references import import_timm
from .settings import LAYER_SETTINGS
from .settings import SHAPES
from .settings import TIMM_NON_LOCAL
from .settings import growth_size
from .settings import layer_kwargs
from .settings import selected_layers


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
