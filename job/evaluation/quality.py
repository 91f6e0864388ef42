"""Quality of a generated set against real scans: SWD, the intensity distance and FID/KID, each
beside the real floor (hold-out vs train), and diversity against the real set's.

Every comparison against real data is made with equal image counts (the smallest of the three
sets), so the hold-out -> train figures are a fair floor: a generator cannot do better than real
scans that it never saw. Pure numpy on (N, H, W, 1) arrays in [-1, 1].
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from job import metrics
from job.errors import UserError
from job.metrics.heldout import ratio

# The figures judged against their real floor: (label in the verdict, key in `quality`'s dict).
FLOOR_FIGURES = (("SWD", "swd"), ("intensity W1", "intensity_w1"))

def subsample(images: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    return images if len(images) == m else images[np.sort(rng.choice(len(images), m, replace=False))]


def quality(
    train: np.ndarray,
    holdout: np.ndarray,
    generated: np.ndarray,
    *,
    seed: int = 0,
    extractor: Callable[[Any], np.ndarray] | None = None,
) -> dict[str, Any]:
    """SWD, intensity W1 (and FID/KID with an extractor) of generated vs train, vs hold-out, and
    the real floor (hold-out vs train).

    All sets are cut to the same count m (SWD and FID are biased by sample size, so unequal
    counts would make the floor unfair); `images_per_set` records m.
    """
    m = min(len(train), len(holdout), len(generated))
    if m < 2:
        raise UserError(f"quality needs at least 2 images per set, got train/hold-out/generated "
                        f"{len(train)}/{len(holdout)}/{len(generated)}")
    rng = np.random.default_rng(seed)
    tr, ho, ge = (subsample(x, m, rng) for x in (train, holdout, generated))
    out: dict[str, Any] = {
        "images_per_set": m,
        "swd_generated_vs_train": metrics.swd(tr, ge, seed=seed),
        "swd_generated_vs_holdout": metrics.swd(ho, ge, seed=seed),
        "swd_holdout_vs_train": metrics.swd(tr, ho, seed=seed),
        "intensity_w1_generated_vs_train": metrics.intensity_w1(tr, ge),
        "intensity_w1_generated_vs_holdout": metrics.intensity_w1(ho, ge),
        "intensity_w1_holdout_vs_train": metrics.intensity_w1(tr, ho),
    }
    if extractor is not None:
        f_tr, f_ho, f_ge = extractor(tr), extractor(ho), extractor(ge)
        for name, (a, b) in {"generated_vs_train": (f_tr, f_ge), "generated_vs_holdout": (f_ho, f_ge),
                             "holdout_vs_train": (f_tr, f_ho)}.items():
            out[f"fid_{name}"] = metrics.fid_from_features(a, b)
            out[f"kid_{name}"] = metrics.kid(a, b, seed=seed)
    return out


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


def diversity(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """Mean pairwise distance among generated and among real images, and their ratio.

    A ratio near 1 means the generator varies as much as the scans; near 0 means mode collapse.
    """
    real_value, generated_value = metrics.diversity(real), metrics.diversity(generated)
    ratio = generated_value / real_value if real_value > 0 else float("nan")
    return {"diversity_generated": generated_value, "diversity_real": real_value, "diversity_ratio": ratio}

