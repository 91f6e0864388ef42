"""Does the generator reproduce training scans? Nearest-neighbour distances and an exact test.

A generated image that is (nearly) a training scan leaks a patient's scan. Every generated image
is matched to its nearest training image; so is every real hold-out image, which gives the
distances at which *unseen* real scans sit from the training set. An image closer to a training
scan than the closest hold-out scan is *flagged*, and shown beside its neighbour in the report.

**The distance** ignores what a copy may change without ceasing to be a copy: brightness and
contrast (each window is normalised to zero mean and unit variance), fine texture (images are
area-averaged to a shorter side of at most `DISTANCE_SIDE` pixels), shifts (the minimum over
shifts of up to `MAX_SHIFT_FRACTION` of the reduced side each way: 4 px at 32, i.e. 8 px at
64x64), zooms of up to ±10% (`ZOOMS`) and a left-right mirror. On normalised windows the RMS
difference is sqrt(2 - 2 rho), rho the Pearson correlation: 0 for a copy, ~1.41 for unrelated
images.

**The verdict is a test, not a count.** If the generator draws scans as new as unseen real ones
(the null hypothesis), a generated image's distance is exchangeable with the M hold-out distances,
so it falls below their minimum with probability 1/(M + 1). The N generated images share that
one random threshold, so the number flagged, K, is not binomial: given the threshold, K is
Binomial(N, U) with U = F(min) ~ Beta(1, M), i.e. K ~ BetaBinomial(N, 1, M) (mean N/(M + 1)).
The p-value is P(K' >= K) under it; memorisation is reported when p < `ALPHA`. (A binomial test at
the rate 1/(M + 1) treats the threshold as fixed: at N = 1000 and M = 85 it calls a perfect
generator a copier 18% of the time at level 0.01, by simulation; the old rule, any flag at all,
almost always.) The test's power is set by M: with M hold-out scans
it detects a generator that copies more than about 1 - ALPHA**(1/M) of its images (24% at M = 17,
5% at M = 85); `summary()` reports that share. An exact copy (distance <= `EXACT_COPY_DISTANCE`)
is memorisation whatever the test says.

Pure numpy on (N, H, W, 1) arrays in [-1, 1], vectorised as matrix products: 1000 generated
images against 300 training scans take a few seconds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.stats

from job.evaluation.nearest import DISTANCE_SIDE, Matches, nearest

ALPHA = 0.01  # the test's level: a generator of new scans is called a copier 1% of the time or less
# A float64 copy scores ~1e-8; anything this close is a copy even when the threshold is 0
# (a hold-out scan duplicated in the training split makes the real floor 0).
EXACT_COPY_DISTANCE = 1e-3
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 1.0)


def chance_p_value(flagged: int, generated: int, holdout: int) -> float:
    """P(K >= flagged) for K ~ BetaBinomial(generated, 1, holdout): the number of images a
    generator of truly new scans has below the minimum of `holdout` real hold-out distances."""
    if flagged <= 0:
        return 1.0
    return float(scipy.stats.betabinom.sf(flagged - 1, generated, 1, holdout))


def detectable_share(holdout: int, alpha: float = ALPHA) -> float:
    """The share of copies above which the test at level `alpha` detects a copier (large N):
    the threshold's chance rate U ~ Beta(1, M) exceeds it with probability alpha."""
    return float(1.0 - alpha ** (1.0 / holdout))


@dataclasses.dataclass(frozen=True)
class Memorisation:
    """Nearest-training-image matches of generated and hold-out images, the flags and the test."""

    matches: Matches  # generated -> nearest training image
    reference: Matches  # real hold-out -> nearest training image
    threshold: float  # the closest hold-out -> train distance
    flagged: np.ndarray  # (N,) bool: closer than the threshold, or an exact copy
    alpha: float = ALPHA

    # The generated images' matches, and the hold-out's distances, by their report names.
    distance = property(lambda self: self.matches.distance)
    neighbour = property(lambda self: self.matches.neighbour)
    shift = property(lambda self: self.matches.shift)
    reference_distance = property(lambda self: self.reference.distance)

    @property
    def exact_copies(self) -> int:
        return int(np.sum(self.distance <= EXACT_COPY_DISTANCE))

    @property
    def p_value(self) -> float:
        return chance_p_value(int(self.flagged.sum()), len(self.distance), len(self.reference_distance))

    @property
    def memorises(self) -> bool:
        """The verdict: more flags than chance allows at level `alpha`, or an exact copy."""
        return self.exact_copies > 0 or self.p_value < self.alpha

    @property
    def flagged_indices(self) -> np.ndarray:
        """Flagged generated images, closest to a training scan first."""
        idx = np.flatnonzero(self.flagged)
        return idx[np.argsort(self.distance[idx], kind="stable")]

    def describe(self, i: int) -> str:
        """How generated image i matches its training scan, e.g. "mirrored, zoom 1.05, shift (2, 0)"."""
        parts = ["mirrored"] if self.matches.mirrored[i] else []
        if self.matches.zoom[i] != 1.0:
            parts.append(f"zoom {self.matches.zoom[i]:g}")
        if self.shift[i].any():
            parts.append(f"shift ({self.shift[i][0]}, {self.shift[i][1]})")
        return ", ".join(parts) or "as is"

    def rows(self) -> list[dict]:
        """One row per generated image, for the JSON report."""
        return [
            {"index": i, "nearest_train": int(self.neighbour[i]),
             "distance": float(self.distance[i]), "shift": [int(s) for s in self.shift[i]],
             "mirrored": bool(self.matches.mirrored[i]), "zoom": float(self.matches.zoom[i]),
             "flagged": bool(self.flagged[i])}
            for i in range(len(self.distance))
        ]

    def summary(self) -> dict:
        n, m, k = len(self.distance), len(self.reference_distance), int(self.flagged.sum())
        return {
            "generated": n,
            "holdout": m,
            "threshold": self.threshold,
            "flagged": k,
            "flagged_share": k / n,
            # A generator drawing fresh scans ranks like one more hold-out scan: each image falls
            # below the minimum of M with probability 1/(M + 1).
            "expected_by_chance": n / (m + 1),
            "test": f"one-sided, K ~ BetaBinomial(n={n}, 1, M={m}) under no memorisation",
            "p_value": self.p_value,
            "alpha": self.alpha,
            "detectable_share": detectable_share(m, self.alpha),
            "exact_copies": self.exact_copies,
            "memorisation": self.memorises,
            "generated_quantiles": _quantiles(self.distance),
            "holdout_quantiles": _quantiles(self.reference_distance),
        }


def verdict_text(summary: dict) -> str:
    """The verdict's words for a `Memorisation.summary()`: exact copies, a detected copier with
    its counts and p-value, or "not detected (...)"."""
    n, k, p = summary["generated"], summary["flagged"], summary["p_value"]
    expected = summary["expected_by_chance"]
    if summary["exact_copies"]:
        return f"{summary['exact_copies']} of {n} generated images are exact copies of training scans"
    if summary["memorisation"]:
        return (f"{k} of {n} generated images closer to a training scan than any unseen real "
                f"scan, {expected:.1f} expected by chance (p = {p:.2g} < {summary['alpha']:g})")
    return f"not detected ({k} of {n} flagged, {expected:.1f} expected by chance, p = {p:.2g})"


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"q{round(q * 100):02d}": float(np.quantile(values, q)) for q in QUANTILES}


def check(
    generated: Any,
    train: Any,
    holdout: Any,
    *,
    side: int = DISTANCE_SIDE,
    threshold: float | None = None,
    alpha: float = ALPHA,
    **matching: Any,
) -> Memorisation:
    """Match generated and hold-out images to the training set, flag the near-copies, test.

    Args:
        generated, train, holdout: (N, H, W, 1) arrays in [-1, 1], one size.
        threshold: defaults to the closest hold-out -> train distance (what the test assumes);
            a number overrides the flags (the p-value then no longer has its meaning).
        alpha: the test's level.
        matching: `max_shift_fraction`, `mirror`, `zooms` for `nearest`.

    Raises:
        UserError: fewer than 1 hold-out or generated image, sizes that differ, NaN or inf.
    """
    matches = nearest(generated, train, side=side, **matching)
    reference = nearest(holdout, train, side=side, **matching)
    if threshold is None:
        threshold = float(reference.distance.min())
    flagged = (matches.distance < threshold) | (matches.distance <= EXACT_COPY_DISTANCE)
    return Memorisation(matches, reference, float(threshold), flagged, alpha)
