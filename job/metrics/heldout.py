"""Scores against the held-out split, each beside its real floor: what picks the best checkpoint
and what `covidct evaluate` judges: one implementation for the loop, evaluation, sweeps and `best`.

Scoring a checkpoint against the images it trained on favours memorising checkpoints late in
long runs. `HeldOutScorer` compares a generated batch with the real *hold-out* scans, and prints
each figure beside its floor: the same comparison made by real training scans, which a generator
cannot beat. The floors are computed once per run (train and hold-out are fixed), so each epoch
costs one evaluation of each registered hold-out family.

    scorer = HeldOutScorer(train_sample, holdout, seed=config.seed)   # once per run
    metrics.update(scorer(generated))                                  # every metrics epoch

Keys, for each key K of a family registered with `heldout` in `job.metrics.registry`:
    K_holdout       generated vs hold-out (swd x1e3, intensity_w1 in [-1, 1] units, coverage as
                    a share; fid and kid only with an Inception extractor)
    K_floor         training vs hold-out (the same image counts)
and the blends (`registry.BLENDS`), each the worst of its members' value / floor:
    quality_ratio   max(swd, intensity_w1 ratios): 1 = as close to unseen scans as real scans
                    are, lower is better. SWD alone is blind to grey levels and intensity alone
                    to structure, so the blend takes the worse.
    diversity       coverage_holdout / coverage_floor: the share of hold-out scans with a
                    generated image as close as their real neighbours, over the share real
                    training scans reach (`job.metrics.coverage`); 1 = as varied as the scans,
                    higher is better, a generator of one pose scores near 0.1.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from job.errors import UserError
from job.metrics import registry
from job.metrics.arrays import as_images

def ratio(value: float, floor: float) -> float:
    """value / floor; inf when the floor is 0 and the value is not."""
    if floor > 0:
        return value / floor
    return 0.0 if value == 0 else float("inf")


class HeldOutScorer:
    """Scores generated batches against a fixed hold-out set, with floors computed once.

    Every comparison uses the same image counts: `k` = min(len(train), len(generated)) images of
    the compared set against all hold-out images, so the floor (k training images vs the
    hold-out) is a fair bar for k generated images. Deterministic for a fixed seed.

    Args:
        train: (N, H, W, 1) real training images in [-1, 1] (the loop's metric sample).
        holdout: (M, H, W, 1) real hold-out images, M >= 2.
        seed: SWD's patch positions and directions, and the subsamples.
        extractor: Inception features (`job.metrics.inception.extractor`); with one, FID and KID
            are scored too.

    Raises:
        UserError: fewer than 2 images, mismatched sizes, NaN or inf.
    """

    def __init__(self, train: Any, holdout: Any, *, seed: int = 0,
                 extractor: Callable[[Any], np.ndarray] | None = None):
        self.train = as_images(train, "train")[..., None]
        self.holdout = as_images(holdout, "hold-out")[..., None]
        if len(self.train) < 2 or len(self.holdout) < 2:
            raise UserError(f"held-out scores need at least 2 training and 2 hold-out images, got "
                            f"{len(self.train)} and {len(self.holdout)}")
        if self.train.shape[1:] != self.holdout.shape[1:]:
            raise UserError(f"train and hold-out sizes differ: {self.train.shape[1:3]} vs "
                            f"{self.holdout.shape[1:3]}")
        self.seed = seed
        self.extractor = extractor
        self.families = [m for m in registry.METRICS.values()
                         if m.heldout and (extractor is not None or not m.needs_extractor)]
        self._floors: dict[int, dict[str, float]] = {}

    def _score(self, images: np.ndarray) -> dict[str, float]:
        out = {}
        for m in self.families:
            values = m.fn(self.holdout, images, seed=self.seed, extractor=self.extractor)
            out.update({key: values[key] for key in m.heldout})
        return out

    def floors(self, k: int) -> dict[str, float]:
        """Each hold-out key's value for k training images vs the hold-out; cached per k."""
        if k not in self._floors:
            self._floors[k] = self._score(self.subsample(self.train, k))
        return self._floors[k]

    def subsample(self, images: np.ndarray, k: int) -> np.ndarray:
        """k of `images` (all when there are k), in their order, the same k for a seed."""
        if len(images) == k:
            return images
        rng = np.random.default_rng(self.seed)
        return images[np.sort(rng.choice(len(images), k, replace=False))]

    def pair(self, generated: Any) -> tuple[np.ndarray, np.ndarray]:
        """(training images, generated images) at the common count k each figure compares."""
        ge = as_images(generated, "generated")[..., None]
        if ge.shape[1:] != self.holdout.shape[1:]:
            raise UserError(f"generated images are {ge.shape[1:3]}, the hold-out "
                            f"{self.holdout.shape[1:3]}")
        k = min(len(self.train), len(ge))
        if k < 2:
            raise UserError(f"held-out scores need at least 2 generated images, got {len(ge)}")
        return self.subsample(self.train, k), self.subsample(ge, k)

    def __call__(self, generated: Any) -> dict[str, float]:
        """The keys above for a generated batch (N, H, W, 1) in [-1, 1]."""
        _, ge = self.pair(generated)
        values, floors = self._score(ge), self.floors(len(ge))
        out = {}
        for key in values:
            out[f"{key}_holdout"], out[f"{key}_floor"] = values[key], floors[key]
        for blend, best in registry.BLENDS.items():
            ratios = [ratio(values[k], floors[k]) for m in registry.members(blend)
                      if m in self.families for k in m.heldout]
            out[blend] = max(ratios) if best == "min" else min(ratios)
        return out
