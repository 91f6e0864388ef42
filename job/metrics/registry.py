"""The metric registry: each metric family's function, the keys it logs and their direction.

The one owner of "which metric ranks runs, and which way": the training loop computes what is
registered here, `best.json` and Ray Tune's scheduler select on `SELECTION_METRIC`, and
`covidct best`, the sweep report and its progress lines read `direction`. (The pattern is
stylegan2-ada-pytorch's metrics/metric_main.py: a registry, one module per metric family.)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable

import numpy as np

from job.errors import UserError
from job.metrics import collapse, heldout, inception, intensity, sliced_wasserstein

# What best.json, Tune's scheduler and `covidct best` rank by: measured against the hold-out split
# (`job.metrics.heldout.HeldOutScorer`), never the training images - SWD against the loop's sample
# of training scans favours memorising checkpoints late in long runs (issue 19). quality_ratio is
# the worse of hold-out SWD and intensity W1, each in units of its real train-vs-hold-out floor.
SELECTION_METRIC = "quality_ratio"


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric family: fn(real, fake, *, seed, extractor) -> {key: value}."""

    name: str
    fn: Callable[..., dict[str, float]]
    directions: dict[str, str]  # headline key -> "min" or "max" (lower / higher is better)
    needs_extractor: bool = False


def _swd(real, fake, *, seed, extractor):
    values = sliced_wasserstein.swd_levels(real, fake, seed=seed)
    shapes = sliced_wasserstein.swd_level_shapes(*np.shape(real)[1:3])
    levels = {f"swd_{h}x{w}": v for (h, w), v in zip(shapes, values)}
    return {"swd": float(np.mean(values)), **levels}


def _intensity(real, fake, *, seed, extractor):
    return {"intensity_w1": intensity.intensity_w1(real, fake)}


def _diversity(real, fake, *, seed, extractor):
    return {"diversity": collapse.diversity(fake)}


def _fid_kid(real, fake, *, seed, extractor):
    if extractor is None:
        raise UserError("FID/KID need InceptionV3 weights: set inception_weights ('imagenet' or a file)")
    return inception.fid_kid(real, fake, extractor, seed=seed)


METRICS = {m.name: m for m in (
    Metric("swd", _swd, {"swd": "min"}),
    Metric("intensity", _intensity, {"intensity_w1": "min"}),
    Metric("diversity", _diversity, {"diversity": "max"}),
    Metric("fid_kid", _fid_kid, {"fid": "min", "kid": "min"}, needs_extractor=True),
)}
# Logged by `HeldOutScorer` (job/metrics/heldout.py) rather than a registered family, because
# they need the hold-out split; the floors are context, not rankings.
HELDOUT_DIRECTIONS = {"swd_holdout": "min", "intensity_w1_holdout": "min", "quality_ratio": "min"}
DIRECTIONS = {**{key: d for m in METRICS.values() for key, d in m.directions.items()},
              **HELDOUT_DIRECTIONS}
assert set(HELDOUT_DIRECTIONS) <= set(heldout.KEYS)


def direction(key: str) -> str:
    """"min" or "max" for a logged metric key; a UserError naming the known keys otherwise."""
    if key not in DIRECTIONS:
        raise UserError(f"no ranking metric {key!r}; one of {sorted(DIRECTIONS)}")
    return DIRECTIONS[key]


def ordering(key: str, value: float) -> float:
    """A sort key: smaller is better, whatever the metric's direction."""
    return value if direction(key) == "min" else -value


def worst(key: str) -> float:
    """The value every measured value of `key` beats (+inf when lower is better)."""
    return math.inf if direction(key) == "min" else -math.inf


def is_better(key: str, value: float, than: float | None) -> bool:
    """Whether `value` beats `than` (None: nothing yet) for the metric `key`."""
    return than is None or ordering(key, value) < ordering(key, than)


def run_metrics(with_extractor: bool) -> list[str]:
    """The metric families the training loop logs every `metrics_every_epochs`."""
    return [m.name for m in METRICS.values() if with_extractor or not m.needs_extractor]


def compute(
    names: Iterable[str],
    real: Any,
    fake: Any,
    *,
    seed: int = 0,
    extractor: Callable[[Any], np.ndarray] | None = None,
) -> dict[str, float]:
    """Run the named metric families on one real and one generated batch; one flat dict."""
    names = list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UserError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    results: dict[str, float] = {}
    for name in names:
        results.update(METRICS[name].fn(real, fake, seed=seed, extractor=extractor))
    return results
