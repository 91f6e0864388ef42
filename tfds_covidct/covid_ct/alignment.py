"""Verification of a near-duplicate candidate pair (step 4 of `dedupe`): align one 64x64 thumbnail
onto the other by a scale and shift per axis, then correlate their detail on the overlap.

Batched in numpy over pairs. The intensity profiles along x and along y are matched over a grid of
crops (each side of one copy may be cut by up to MAX_CROP of the other), coarse then fine; the
aligned thumbnails are compared by the correlation of their detail, the band between Gaussian
blurs of DETAIL_SMOOTH_SIGMA and DETAIL_SIGMA px (see dedupe's docstring for why and the figures).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

THUMB_SIDE = 64  # the scan's frame (uniform borders trimmed) is compared at 64x64
MAX_CROP = 0.12  # each side may be cut by up to 12% of the other copy's extent
COARSE_STEP, FINE_STEP = 0.02, 0.005  # the crop grid: every 2%, then +-2% around the best by 0.5%
DETAIL_SIGMA = 2.5  # px of the 64x64 thumbnail: the blur removed to leave the detail
DETAIL_SMOOTH_SIGMA = 0.7  # px: both aligned thumbnails are smoothed this much first (dedupe, 4.)
VERIFY_BATCH = 256
MIN_OVERLAP = 0.75  # the aligned overlap must cover this share of both thumbnails


def verify(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Aligns thumbnails b onto a, pair by pair (batched), and returns their detail correlation.

    Args:
      a, b: (P, 64, 64) float thumbnails.

    Returns:
      (P,) float32 correlations in [-1, 1] (0 when the aligned overlap is under MIN_OVERLAP), and
      for each pair the crop found: per axis, the share of a's extent before b's start and after
      b's end (negative: b shows more than a on that side).
    """
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if len(a) > VERIFY_BATCH:  # bounded memory: ~(VERIFY_BATCH x 169 x 64) floats per step
        parts = [verify(a[i:i + VERIFY_BATCH], b[i:i + VERIFY_BATCH]) for i in range(0, len(a), VERIFY_BATCH)]
        return np.concatenate([p[0] for p in parts]), [c for p in parts for c in p[1]]
    if len(a) == 0:
        return np.zeros(0, np.float32), []
    gx = _align_axis(a.mean(axis=1), b.mean(axis=1))  # x profiles (mean over rows), (P, 2)
    gy = _align_axis(a.mean(axis=2), b.mean(axis=2))  # y profiles
    mx, wx = _resamplers(gx)
    my, wy = _resamplers(gy)
    aligned = my @ a @ np.swapaxes(mx, 1, 2)  # (P, 64, 64) a in b's frame
    inside = (_erode(wy, 3)[:, :, None] * _erode(wx, 3)[:, None, :]) > 0.5
    da, db = _detail(aligned), _detail(b)
    count = inside.sum(axis=(1, 2))
    denom = np.maximum(count, 1)
    da = np.where(inside, da - (da * inside).sum(axis=(1, 2), keepdims=True) / denom[:, None, None], 0)
    db = np.where(inside, db - (db * inside).sum(axis=(1, 2), keepdims=True) / denom[:, None, None], 0)
    num = (da * db).sum(axis=(1, 2))
    den = np.sqrt((da * da).sum(axis=(1, 2)) * (db * db).sum(axis=(1, 2)))
    # The overlap is judged before the 3-sample erosion (which only keeps resampling edges out of
    # the correlation): eroded, a copy cut 3% per side looked like a 72% overlap and scored 0 when
    # it was the larger file (the one aligned onto the other).
    overlap = (wy[:, :, None] * wx[:, None, :]).sum(axis=(1, 2))
    scores = np.where((den > 1e-6) & (overlap >= MIN_OVERLAP * THUMB_SIDE ** 2),
                      num / np.maximum(den, 1e-6), 0.0)
    crops = [f"x:{s0:+.3f}..{1 - e0:+.3f} y:{s1:+.3f}..{1 - e1:+.3f}"
             for (s0, e0), (s1, e1) in zip(gx.tolist(), gy.tolist())]
    return scores.astype(np.float32), crops


def _detail(x: np.ndarray) -> np.ndarray:
    """(P, 64, 64) -> the band between DETAIL_SMOOTH_SIGMA and DETAIL_SIGMA px (difference of
    Gaussians): vessels and airways, without the body outline and without resampling noise."""
    fine = ndimage.gaussian_filter(x, (0, DETAIL_SMOOTH_SIGMA, DETAIL_SMOOTH_SIGMA), mode="nearest")
    return fine - ndimage.gaussian_filter(x, (0, DETAIL_SIGMA, DETAIL_SIGMA), mode="nearest")


def _resamplers(spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) spans (start, end) -> (P, 64, 64) linear-interpolation matrices taking a's samples
    to b's (b spanning a's [start, end], normalised) and the (P, 64) masks of b's samples that
    fall inside a."""
    n = THUMB_SIDE
    u = (np.arange(n) + 0.5) / n
    u = u.astype(np.float32)
    x = (spans[:, :1] + u[None, :] * (spans[:, 1:] - spans[:, :1])) * n - 0.5  # (P, 64)
    mask = ((x >= -0.5) & (x <= n - 0.5)).astype(np.float32)
    x = np.clip(x, 0, n - 1)
    lo = np.floor(x)
    frac = (x - lo).astype(np.float32)
    hi = np.minimum(lo + 1, n - 1)
    j = np.arange(n)[None, None, :]
    m = (1 - frac)[..., None] * (lo[..., None] == j) + frac[..., None] * (hi[..., None] == j)
    return m.astype(np.float32), mask


def _erode(mask: np.ndarray, k: int) -> np.ndarray:
    """(P, 64) 0/1 masks shrunk by k samples from each end of their run."""
    padded = np.pad(mask, ((0, 0), (k, k)))
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1, axis=1).min(axis=2)


def _align_axis(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Per pair, the (start, end) of b's extent in a's normalised coordinates whose resampling of
    a's 1-D profile best matches b's.

    Args: pa, pb: (P, 64) float32 profiles. Returns: (P, 2) float32 spans. A coarse grid of every
    COARSE_STEP over +-MAX_CROP per side (one matrix product for all pairs), then a fine grid of
    FINE_STEP within one coarse step of the best.
    """
    coarse = np.arange(-MAX_CROP, MAX_CROP + 1e-6, COARSE_STEP, dtype=np.float32)
    s, e = np.meshgrid(coarse, 1.0 + coarse, indexing="ij")
    grid = np.stack([s.ravel(), e.ravel()], axis=1)  # (G, 2)
    m, w = _resamplers(grid)  # (G, 64, 64), (G, 64)
    resampled = (pa @ m.reshape(-1, THUMB_SIDE).T).reshape(len(pa), len(grid), THUMB_SIDE)
    best = np.argmax(_masked_correlation(resampled, pb[:, None, :], w[None]), axis=1)
    fine = np.arange(-COARSE_STEP, COARSE_STEP + 1e-6, FINE_STEP, dtype=np.float32)
    ds, de = np.meshgrid(fine, fine, indexing="ij")
    spans = grid[best][:, None, :] + np.stack([ds.ravel(), de.ravel()], axis=1)[None]  # (P, F, 2)
    n = THUMB_SIDE
    u = ((np.arange(n) + 0.5) / n).astype(np.float32)
    x = (spans[..., :1] + u * (spans[..., 1:] - spans[..., :1])) * n - 0.5  # (P, F, 64)
    w = ((x >= -0.5) & (x <= n - 0.5)).astype(np.float32)
    x = np.clip(x, 0, n - 1)
    lo = np.floor(x).astype(np.intp)
    frac = x - lo
    rows = np.arange(len(pa))[:, None, None]
    resampled = pa[rows, lo] * (1 - frac) + pa[rows, np.minimum(lo + 1, n - 1)] * frac
    best = np.argmax(_masked_correlation(resampled, pb[:, None, :], w), axis=1)
    return spans[np.arange(len(pa)), best]


def _masked_correlation(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Correlation of x and y over the last axis where w is 1; -2 when w covers < MIN_OVERLAP."""
    count = w.sum(axis=-1)
    n = np.maximum(count, 1)
    xc = (x - (x * w).sum(axis=-1, keepdims=True) / n[..., None]) * w
    yc = (y - (y * w).sum(axis=-1, keepdims=True) / n[..., None]) * w
    score = (xc * yc).sum(axis=-1) / (np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1)) + 1e-6)
    return np.where(count >= MIN_OVERLAP * THUMB_SIDE, score, -2.0)
