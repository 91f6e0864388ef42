"""Quality metrics for generated CT slices: GAN losses say little about quality, these measure it.

One module per metric family (`sliced_wasserstein` for SWD, `intensity`, `coverage` for diversity,
`inception` for FID/KID, `collapse` for D's accuracy on real images), `heldout` for the scores
against the hold-out split beside their real floors (what picks the best checkpoint and what
`covidct evaluate` judges), and a `registry` that knows each metric's keys and direction. Every
function takes image batches in [-1, 1] of shape (N, H, W, 1) as numpy arrays and returns plain
floats. The public functions are re-exported
here, so `from job import metrics; metrics.swd(real, fake)` reads as the method's name.
"""

from job.metrics.collapse import d_accuracy_real
from job.metrics import coverage  # the module: metrics.coverage.coverage(real, fake)
from job.metrics.inception import (
    InceptionFeatures,
    fid_from_features,
    fid_kid,
    frechet_distance,
    kid,
)
from job.metrics.intensity import intensity_w1
from job.metrics.heldout import HeldOutScorer
from job.metrics.registry import (
    METRICS,
    SELECTION_METRIC,
    compute,
    direction,
    is_better,
)
from job.metrics.sliced_wasserstein import swd, swd_level_shapes, swd_levels

__all__ = [
    "HeldOutScorer", "InceptionFeatures", "METRICS", "SELECTION_METRIC", "compute", "coverage",
    "d_accuracy_real", "direction", "fid_from_features", "fid_kid", "frechet_distance",
    "intensity_w1", "is_better", "kid", "swd", "swd_level_shapes", "swd_levels",
]
