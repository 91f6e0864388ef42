"""Quality and diversity of a generated set against real scans, in the report's words.

The figures are the training loop's: `job.metrics.heldout.HeldOutScorer` scores k generated and
k training images (k = the smaller count) against every hold-out scan, so the training scans'
figure is a fair floor (a generator cannot do better than real scans it never saw), and the
registry's families add generated vs training (`registry.compute`, as the loop logs them). This
module only names them for the report: `<key>_generated_vs_holdout`, `<key>_holdout_vs_train`
(the floor) and `<key>_generated_vs_train` for SWD, intensity W1 (and FID/KID with an
extractor); the diversity section holds coverage and its ratio. Pure numpy on (N, H, W, 1)
arrays in [-1, 1].
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from job.metrics import coverage, registry
from job.metrics.heldout import HeldOutScorer, ratio

# The figures judged against their real floor: (label in the verdict, key in `quality`'s dict).
FLOOR_FIGURES = tuple((m.label, key) for m in registry.members("quality_ratio") for key in m.heldout)


def measure(
    train: np.ndarray,
    holdout: np.ndarray,
    generated: np.ndarray,
    *,
    seed: int = 0,
    extractor: Callable[[Any], np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(quality, diversity) of `generated` against the real `train` and `holdout` images.

    quality: `images_per_set` (k), `holdout_images`, `quality_ratio` and, per registered
    hold-out key but coverage, its value vs the hold-out, vs train and the floor.
    diversity: `diversity_ratio` (the loop's `diversity`: coverage over its floor),
    `coverage_generated`, `coverage_real` (training scans' coverage: the reference), `neighbours`
    and `side` (the feature space: `job.metrics.coverage`).

    Raises:
        UserError: fewer than 2 images in a set, sizes that differ, NaN or inf.
    """
    scorer = HeldOutScorer(train, holdout, seed=seed, extractor=extractor)
    scores = scorer(generated)
    tr, ge = scorer.pair(generated)
    judged = [m for m in scorer.families if m.blend != "diversity"]
    vs_train = registry.compute([m.name for m in judged], tr, ge, seed=seed, extractor=extractor)
    q: dict[str, Any] = {"images_per_set": len(ge), "holdout_images": len(scorer.holdout),
                         "quality_ratio": scores["quality_ratio"]}
    for key in (k for m in judged for k in m.heldout):
        q[f"{key}_generated_vs_holdout"] = scores[f"{key}_holdout"]
        q[f"{key}_holdout_vs_train"] = scores[f"{key}_floor"]
        q[f"{key}_generated_vs_train"] = vs_train[key]
    d = {"diversity_ratio": scores["diversity"], "coverage_generated": scores["coverage_holdout"],
         "coverage_real": scores["coverage_floor"],
         "neighbours": coverage.neighbours_for(len(scorer.holdout)),
         "side": coverage.COVERAGE_SIDE, "images_per_set": len(ge)}
    return q, d


def quality(train: np.ndarray, holdout: np.ndarray, generated: np.ndarray, *, seed: int = 0,
            extractor: Callable[[Any], np.ndarray] | None = None) -> dict[str, Any]:
    """The quality half of `measure`."""
    return measure(train, holdout, generated, seed=seed, extractor=extractor)[0]


def floor_ratios(q: dict[str, Any]) -> dict[str, float]:
    """Each figure of `quality`'s dict `q` against the hold-out over its real floor (hold-out vs
    train), by key: {"swd": ..., "intensity_w1": ...}; inf when a floor of 0 is exceeded."""
    return {key: ratio(q[f"{key}_generated_vs_holdout"], q[f"{key}_holdout_vs_train"])
            for _, key in FLOOR_FIGURES}


def against_floor(q: dict[str, Any], max_ratio: float) -> tuple[bool, str]:
    """(ok, text): `floor_ratios(q)` at most `max_ratio` each (NaN fails); the text names the
    failing figures, or all when none fails, e.g. "SWD 5.10x its real floor (204 vs 40) > 2x"."""
    ratios = floor_ratios(q)
    figures = [(label, ratios[key], q[f"{key}_generated_vs_holdout"], q[f"{key}_holdout_vs_train"])
               for label, key in FLOOR_FIGURES]
    bad = [f for f in figures if not f[1] <= max_ratio]
    text = ", ".join(f"{label} {r:.2f}x its real floor ({v:.4g} vs {fl:.4g})"
                     for label, r, v, fl in bad or figures)
    return not bad, f"{text} > {max_ratio:g}x" if bad else f"{text} (<= {max_ratio:g}x)"
