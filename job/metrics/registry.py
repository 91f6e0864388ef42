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
from job.metrics import coverage, inception, intensity, sliced_wasserstein

# What best.json, Tune's scheduler and `covidct best` rank by: measured against the hold-out split
# (`job.metrics.heldout.HeldOutScorer`), never the training images - SWD against the loop's sample
# of training scans favours memorising checkpoints late in long runs (issue 19). quality_ratio is
# the worse of hold-out SWD and intensity W1, each in units of its real train-vs-hold-out floor.
SELECTION_METRIC = "quality_ratio"


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric family: fn(real, fake, *, seed, extractor) -> {key: value}.

    `heldout` keys are also scored by `job.metrics.heldout.HeldOutScorer` against the hold-out
    split beside their real floor, logged as `<key>_holdout` and `<key>_floor`; `blend` names the
    figure their ratio to the floor joins (`BLENDS`), `label` is how a report names the family.
    """

    name: str
    fn: Callable[..., dict[str, float]]
    directions: dict[str, str]  # headline key -> "min" or "max" (lower / higher is better)
    label: str
    needs_extractor: bool = False
    heldout: tuple[str, ...] = ()
    blend: str | None = None


def _swd(real, fake, *, seed, extractor):
    values = sliced_wasserstein.swd_levels(real, fake, seed=seed)
    shapes = sliced_wasserstein.swd_level_shapes(*np.shape(real)[1:3])
    levels = {f"swd_{h}x{w}": v for (h, w), v in zip(shapes, values)}
    return {"swd": float(np.mean(values)), **levels}


def _intensity(real, fake, *, seed, extractor):
    return {"intensity_w1": intensity.intensity_w1(real, fake)}


def _coverage(real, fake, *, seed, extractor):
    return {"coverage": coverage.coverage(real, fake)}


def _fid_kid(real, fake, *, seed, extractor):
    if extractor is None:
        raise UserError("FID/KID need InceptionV3 weights: set inception_weights ('imagenet' or a file)")
    return inception.fid_kid(real, fake, extractor, seed=seed)


# Adding a metric: one module in job/metrics/ and one line here. With `heldout` it is scored
# against the hold-out beside its floor (the loop, `covidct evaluate`, sweeps and `covidct best`
# all read the scorer); with a `blend` its ratio to the floor joins that figure.
METRICS = {m.name: m for m in (
    Metric("swd", _swd, {"swd": "min"}, "SWD", heldout=("swd",), blend="quality_ratio"),
    Metric("intensity", _intensity, {"intensity_w1": "min"}, "intensity W1",
           heldout=("intensity_w1",), blend="quality_ratio"),
    Metric("coverage", _coverage, {"coverage": "max"}, "coverage", heldout=("coverage",),
           blend="diversity"),
    Metric("fid_kid", _fid_kid, {"fid": "min", "kid": "min"}, "FID/KID", needs_extractor=True,
           heldout=("fid", "kid")),
)}
# The blended figures `HeldOutScorer` logs, each the worst of its members' ratios to their real
# floors (1 = as close to unseen scans as real scans are): quality_ratio (SWD alone is blind to
# grey levels, intensity alone to structure) and diversity (coverage of the hold-out over real
# training scans' coverage: the one diversity figure the loop, `evaluate` and the verdict read).
BLENDS = {"quality_ratio": "min", "diversity": "max"}
DIRECTIONS = {
    **{key: d for m in METRICS.values() for key, d in m.directions.items()},
    **{f"{key}_holdout": m.directions[key] for m in METRICS.values() for key in m.heldout},
    **BLENDS,
}
assert all(m.blend is None or {m.directions[k] for k in m.heldout} == {BLENDS[m.blend]}
           for m in METRICS.values())


def members(blend: str) -> list[Metric]:
    """The families whose hold-out ratio joins `blend` ("quality_ratio" or "diversity")."""
    return [m for m in METRICS.values() if m.blend == blend]


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
