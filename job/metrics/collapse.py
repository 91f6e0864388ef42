"""Cheap signals of collapse: the diversity of a generated batch, D's accuracy on real images."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.spatial.distance

from job.errors import UserError
from job.metrics.arrays import as_images, pyr_down


# Diversity halves images until the shorter side is at most this: enough to tell scans apart,
# cheap for N = 1000.
DIVERSITY_MAX_SIDE = 64


def diversity(images: Any) -> float:
    """Mean pairwise RMS distance between images, on pixels in [0, 1] at <= 64 px.

    Near 0 means the generator draws the same image for every latent (mode collapse); compare it
    with the real set's value. Downsampling (Gaussian pyramid) makes it cheap and insensitive to
    pixel noise.
    """
    x = (as_images(images, "images") + 1.0) / 2.0
    if len(x) < 2:
        raise UserError("diversity needs at least 2 images")
    while min(x.shape[1:]) > DIVERSITY_MAX_SIDE:
        x = pyr_down(x)
    flat = x.reshape(len(x), -1).astype(np.float64)
    return float(np.mean(scipy.spatial.distance.pdist(flat)) / math.sqrt(flat.shape[1]))


def d_accuracy_real(logits: Any) -> float:
    """Fraction of real images the discriminator scores as real (logit > 0).

    Near 1 for long stretches means D has won (or memorised a small training set): a sign to
    strengthen augmentation. The logits are D's raw outputs on real images.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if z.size == 0:
        raise UserError("d_accuracy_real: no logits")
    return float(np.mean(z > 0))
