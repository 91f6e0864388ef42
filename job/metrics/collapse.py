"""A cheap signal of a discriminator that has won: its accuracy on real images.

(Diversity is `job.metrics.coverage`, scored against the hold-out by `job.metrics.heldout`.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from job.errors import UserError


def d_accuracy_real(logits: Any) -> float:
    """Fraction of real images the discriminator scores as real (logit > 0).

    Near 1 for long stretches means D has won (or memorised a small training set): a sign to
    strengthen augmentation. The logits are D's raw outputs on real images.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if z.size == 0:
        raise UserError("d_accuracy_real: no logits")
    return float(np.mean(z > 0))
