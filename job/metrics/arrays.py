"""Input checks and the Gaussian pyramid step shared by the metric families.

Every metric takes image batches in [-1, 1] of shape (N, H, W, 1) or (N, H, W) as numpy arrays
(what the generator emits) and returns plain floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.ndimage

from job.errors import UserError

# cv2.pyrDown's 5-tap binomial filter, applied separably (5x5 = outer product of this with itself).
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0


def as_images(images: Any, name: str, dtype=np.float32) -> np.ndarray:
    """(N, H, W, 1) or (N, H, W) in [-1, 1] -> (N, H, W) of `dtype`; a UserError naming `name`
    for a wrong shape, no images, NaN or inf."""
    x = np.asarray(images, dtype=dtype)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise UserError(
            f"{name}: expected images of shape (N, H, W, 1), got {tuple(np.shape(images))}"
        )
    if x.shape[0] == 0:
        raise UserError(f"{name}: no images")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{name}: images contain NaN or inf (did the generator diverge?)")
    return x


def as_matrix(features: Any, name: str) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise UserError(f"{name}: expected features of shape (N >= 2, D), got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise UserError(f"{name}: features contain NaN or inf")
    return f


def pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur with the binomial filter and keep every second pixel (cv2.pyrDown, reflect-101)."""
    x = scipy.ndimage.correlate1d(x, _BINOMIAL, axis=1, mode="mirror")
    x = scipy.ndimage.correlate1d(x, _BINOMIAL, axis=2, mode="mirror")
    return x[:, ::2, ::2]


def pyr_up(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Upsample by zero insertion and blur (cv2.pyrUp), cropped to `shape` for odd sizes."""
    n, h, w = x.shape
    up = np.zeros((n, 2 * h, 2 * w), dtype=x.dtype)
    up[:, ::2, ::2] = x
    # Zero insertion keeps a quarter of the energy; twice the filter per axis restores it.
    up = scipy.ndimage.correlate1d(up, 2 * _BINOMIAL, axis=1, mode="mirror")
    up = scipy.ndimage.correlate1d(up, 2 * _BINOMIAL, axis=2, mode="mirror")
    return up[:, : shape[0], : shape[1]]


def _area_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights that average source pixels into target cells by overlap."""
    edges = np.arange(target + 1) * (source / target)
    lo, hi = edges[:-1, None], edges[1:, None]
    pixel = np.arange(source)[None, :]
    overlap = np.clip(np.minimum(hi, pixel + 1) - np.maximum(lo, pixel), 0.0, None)
    return overlap / (source / target)


def reduce(images: np.ndarray, side: int) -> np.ndarray:
    """Area-average (N, H, W) so the shorter side is at most `side`, keeping the aspect ratio."""
    n, h, w = images.shape
    scale = min(1.0, side / min(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    if (th, tw) == (h, w):
        return images
    # Two batched matrix products (rows, then columns): a single 3-operand einsum loops naively.
    return _area_matrix(h, th) @ (images @ _area_matrix(w, tw).T)
