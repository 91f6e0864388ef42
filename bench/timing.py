"""Interleaved timing: every contender runs once per round, in rotating order, so machine noise
(other processes, thermal drift) hits all of them alike; the figure is the median over rounds."""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Sequence


def calibrate(run: Callable[[int], object], min_seconds: float) -> int:
    """Steps per round so one round lasts at least `min_seconds` (a step is timed once, warm)."""
    t0 = time.perf_counter()
    run(1)
    one = max(time.perf_counter() - t0, 1e-6)
    return max(1, math.ceil(min_seconds / one))


def interleaved(
    contenders: Sequence[tuple[str, Callable[[int], object], int]],
    rounds: int,
) -> dict[str, list[float]]:
    """Seconds per step of each (name, run(steps), steps) over `rounds` rotating rounds.

    `run(steps)` must block until its steps are done (fetch a result).
    """
    samples: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    n = len(contenders)
    for r in range(rounds):
        for i in range(n):
            name, run, steps = contenders[(i + r) % n]
            t0 = time.perf_counter()
            run(steps)
            samples[name].append((time.perf_counter() - t0) / steps)
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
