"""Intensity: how far the grey levels of generated images are from real scans.

SWD normalises each set's patches by that set's own mean and spread, so a generator whose pixels
are far too dark or too harsh can score at the real floor (STACK.md). The 1-D Wasserstein-1
distance between the two sets' pixel-intensity distributions sees exactly that: it is the mean
absolute difference between the sorted pixel values (quantile functions), in [-1, 1] units, so
0.1 means grey levels off by a twentieth of the range on average.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from job.metrics.arrays import as_images

QUANTILES = 1024  # the distributions are compared at this many evenly spaced quantiles


def intensity_w1(real: Any, fake: Any) -> float:
    """W1 distance between the pixel-intensity distributions of two sets of images in [-1, 1].

    Args:
        real, fake: (N, H, W, 1) or (N, H, W) arrays in [-1, 1]; sizes may differ.

    Returns:
        The distance in [-1, 1] units: 0 for identical distributions, at most 2.

    Raises:
        UserError: empty sets, a wrong shape, NaN or inf.
    """
    r, f = as_images(real, "real"), as_images(fake, "fake")
    q = (np.arange(QUANTILES) + 0.5) / QUANTILES
    return float(np.mean(np.abs(np.quantile(r, q) - np.quantile(f, q))))
