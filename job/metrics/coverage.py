"""Coverage: the share of real scans that have a generated image as close as their real neighbours.

Coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models",
ICML; reference code clovaai/generative-evaluation-prdc): around each real image R_j draw the
ball out to its k-th nearest *real* neighbour; coverage is the share of real images whose ball
holds at least one generated image,

    coverage = 1/M * sum_j 1[ min_i d(G_i, R_j) < NND_k(R_j) ],

k = 5 (the paper's default), fewer on a small hold-out so that no ball holds more than an eighth
of it (`neighbours_for`: k = 2 for the sample's 17 hold-out scans; at k = 5 each ball held a
third of them and one scan with noise covered 0.44 of the real figure). A generator of one pose
lands in the balls of the few scans of that pose only, whatever its texture; a generator that
spreads over the scans' layouts lands in most. Unlike the mean pairwise distance it replaces
(which scored a set of one pose plus pixel noise as "varied"), it asks "which real scans does
nothing generated resemble?", and it is bounded in [0, 1]. It grows with the number of
generated images, so it is always compared at equal counts with the same figure for real
training scans (`job.metrics.heldout`: the floor).

It is a recall: it sees which real layouts are never drawn, not how often each is drawn. A
generator drawing one pose in 80% of its images and real variety in the rest reached 0.75 of the
real figure on the full COVID scans at 154 images per set (0.51 at 74), so a grid dominated by
one pose can pass if the rest varies enough; the grid stays worth a look.

**The feature space** is pixels area-averaged to a shorter side of `COVERAGE_SIDE` = 8 and
z-scored per image, distance = RMS difference (sqrt(2 - 2 rho), rho the Pearson correlation):
the layout a person sees in a grid (where the lungs, the heart and the body outline sit), not
texture (SWD's job) nor grey levels (intensity W1's). Measured on the real COVID scans at 28x28
(74 hold-out scans; half the training scans as "generated", the other half as the floor, 6
splits), over the real figure: unseen real scans 1.01 +- 0.01; one scan with pixel noise 0.04;
that scan moved up to 3 px and zoomed up to 10% 0.11. At 74 images per set, real scans under
strong pixel noise (sd 0.3) still covered 0.80 against 0.82 (at 16 px 0.62, at 28 px 0.43:
texture leaks in). Inception features would need weights this offline project often lacks; the
memorisation distance (`job.evaluation.nearest`) searches shifts and zooms per pair, too slow for
the full M x (N + M) matrices coverage needs, and it is built to call a moved copy the same
image.

Pure numpy on (N, H, W, 1) arrays in [-1, 1]: 1000 x 300 images in well under a second.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from job.errors import UserError
from job.metrics.arrays import as_images, reduce

COVERAGE_SIDE = 8  # px of the shorter side the images are area-averaged to (layout, not texture)
NEIGHBOURS = 5  # k of the k-th real neighbour: Naeem et al.'s default...
BALL_SHARE = 8  # ...capped so a ball holds at most 1/8 of a small hold-out


def features(images: Any) -> np.ndarray:
    """(N, H, W, 1) in [-1, 1] -> (N, D) float64: area-averaged to `COVERAGE_SIDE`, centred and
    scaled to unit length per image (z-scored, over sqrt(D)), so the Euclidean distance is the
    RMS difference of the z-scored images, sqrt(2 - 2 rho): 0 = same layout, ~1.41 = unrelated.
    A flat image maps to zeros."""
    x = reduce(as_images(images, "coverage: images", np.float64), COVERAGE_SIDE)
    f = x.reshape(len(x), -1)
    f = f - f.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.sum(f**2, axis=1, keepdims=True))
    return np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances between rows of feature matrices."""
    d2 = np.sum(a**2, axis=1)[:, None] + np.sum(b**2, axis=1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(d2, 0.0, None))


def neighbours_for(m: int, neighbours: int = NEIGHBOURS) -> int:
    """The k used with m real images: `neighbours`, at most m // BALL_SHARE, at least 1."""
    return min(neighbours, max(1, m // BALL_SHARE))


def radii(real_features: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """(M,) distance from each real image to its k-th nearest other real image,
    k = `neighbours_for(M, neighbours)`."""
    m = len(real_features)
    if m < 2:
        raise UserError(f"coverage needs at least 2 real images, got {m}")
    d = _distances(real_features, real_features)
    np.fill_diagonal(d, np.inf)
    k = neighbours_for(m, neighbours)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def coverage(real: Any, fake: Any, *, neighbours: int = NEIGHBOURS) -> float:
    """The share of `real` images with a `fake` image closer than their k-th real neighbour.

    Args:
        real: (M >= 2, H, W, 1) real images in [-1, 1] (the hold-out, for the run's figure).
        fake: (N >= 1, H, W, 1) images of the same size.
        neighbours: k (capped by `neighbours_for`).

    Returns:
        In [0, 1]; higher is better. Compare it with real images' own value at the same N.

    Raises:
        UserError: fewer than 2 real images, no fake image, sizes that differ, NaN or inf.
    """
    if np.shape(real)[1:3] != np.shape(fake)[1:3]:
        raise UserError(f"coverage compares images of one size: real {np.shape(real)[1:3]} vs "
                        f"fake {np.shape(fake)[1:3]}")
    r, f = features(real), features(fake)
    nearest_fake = _distances(r, f).min(axis=1)
    return float(np.mean(nearest_fake < radii(r, neighbours)))
