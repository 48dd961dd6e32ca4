"""Interleaved timing: every case once per round, in an order that rotates."""

import statistics
import time


def time_interleaved(calls, warmup, repeats):
    """Seconds per call of each entry of `calls` (key -> callable), one per round.

    Every round runs every call once; the order rotates so that no case always runs
    right after another (caches, thermal and neighbour noise spread evenly).
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    keys = list(calls)
    samples = {key: [] for key in keys}
    for round_index in range(repeats):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            calls[key]()
            samples[key].append(time.perf_counter() - start)
    return samples


def paired_ratio(samples, baseline):
    """Median over rounds of sample / baseline sample of the same round."""
    return statistics.median(s / b for s, b in zip(samples, baseline))
