"""Scores against the held-out split, each beside its real floor: what picks the best checkpoint.

Scoring a checkpoint against the images it trained on favours memorising checkpoints late in
long runs. `HeldOutScorer` compares a generated batch with the real *hold-out* scans, and prints
each figure beside its floor: the same comparison made by real training scans, which a generator
cannot beat. The floors are computed once per run (train and hold-out are fixed), so each epoch
costs one SWD and one intensity distance.

    scorer = HeldOutScorer(train_sample, holdout, seed=config.seed)   # once per run
    metrics.update(scorer(generated))                                  # every metrics epoch

Keys (all registered in `job.metrics.registry` with their direction):
    swd_holdout            SWD x1e3, generated vs hold-out
    swd_floor              SWD x1e3, training vs hold-out (the same image counts)
    intensity_w1_holdout   intensity W1, generated vs hold-out, [-1, 1] units
    intensity_w1_floor     intensity W1, training vs hold-out
    quality_ratio          max(swd_holdout / swd_floor, intensity_w1_holdout / intensity_w1_floor):
                           the worse of the two in units of its floor; 1 = as close to unseen
                           scans as real scans are, lower is better. SWD alone is blind to grey
                           levels and intensity alone to structure, so the blend takes the worse.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from job.errors import UserError
from job.metrics import intensity, sliced_wasserstein
from job.metrics.arrays import as_images

KEYS = ("swd_holdout", "swd_floor", "intensity_w1_holdout", "intensity_w1_floor", "quality_ratio")


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
        seed: SWD's patch positions and directions, and the training subsample.

    Raises:
        UserError: fewer than 2 images, mismatched sizes, NaN or inf.
    """

    def __init__(self, train: Any, holdout: Any, *, seed: int = 0):
        self.train = as_images(train, "train")[..., None]
        self.holdout = as_images(holdout, "hold-out")[..., None]
        if len(self.train) < 2 or len(self.holdout) < 2:
            raise UserError(f"held-out scores need at least 2 training and 2 hold-out images, got "
                            f"{len(self.train)} and {len(self.holdout)}")
        if self.train.shape[1:] != self.holdout.shape[1:]:
            raise UserError(f"train and hold-out sizes differ: {self.train.shape[1:3]} vs "
                            f"{self.holdout.shape[1:3]}")
        self.seed = seed
        self._floors: dict[int, tuple[float, float]] = {}

    def floors(self, k: int) -> tuple[float, float]:
        """(SWD, intensity W1) of k training images vs the hold-out; cached per k."""
        if k not in self._floors:
            tr = self._subsample(self.train, k)
            self._floors[k] = (sliced_wasserstein.swd(self.holdout, tr, seed=self.seed),
                               intensity.intensity_w1(self.holdout, tr))
        return self._floors[k]

    def _subsample(self, images: np.ndarray, k: int) -> np.ndarray:
        if len(images) == k:
            return images
        rng = np.random.default_rng(self.seed)
        return images[np.sort(rng.choice(len(images), k, replace=False))]

    def __call__(self, generated: Any) -> dict[str, float]:
        """The `KEYS` for a generated batch (N, H, W, 1) in [-1, 1]."""
        ge = as_images(generated, "generated")[..., None]
        if ge.shape[1:] != self.holdout.shape[1:]:
            raise UserError(f"generated images are {ge.shape[1:3]}, the hold-out "
                            f"{self.holdout.shape[1:3]}")
        k = min(len(self.train), len(ge))
        if k < 2:
            raise UserError(f"held-out scores need at least 2 generated images, got {len(ge)}")
        swd_floor, w1_floor = self.floors(k)
        ge = self._subsample(ge, k)
        swd = sliced_wasserstein.swd(self.holdout, ge, seed=self.seed)
        w1 = intensity.intensity_w1(self.holdout, ge)
        return {
            "swd_holdout": swd,
            "swd_floor": swd_floor,
            "intensity_w1_holdout": w1,
            "intensity_w1_floor": w1_floor,
            "quality_ratio": max(ratio(swd, swd_floor), ratio(w1, w1_floor)),
        }
