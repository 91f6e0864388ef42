"""The nearest training scan of each image, under what a copy may change without ceasing to be one.

Brightness and contrast (each window normalised to zero mean and unit variance), fine texture
(images area-averaged to a shorter side of at most `DISTANCE_SIDE` px), shifts up to
`MAX_SHIFT_FRACTION` of the reduced side each way, zooms of up to ±10% (`ZOOMS`) and a left-right
mirror. On normalised windows the RMS difference is sqrt(2 - 2 rho), rho the Pearson correlation:
0 for a copy, ~1.41 for unrelated images. A coarse stage keeps `CANDIDATES` training scans per
query; the fine stage searches their variants. Pure numpy, vectorised as matrix products.
`job.evaluation.memorisation` turns these distances into a verdict.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from job.errors import UserError
from job.metrics.arrays import as_images, reduce

DISTANCE_SIDE = 32  # images are area-averaged until the shorter side is at most this
MAX_SHIFT_FRACTION = 0.125  # of the reduced shorter side, each way (DiffAugment's translation)
ZOOMS = (0.9, 0.95, 1.0, 1.05, 1.1)  # steps of 5%: a 1.04x copy is within 1% of one of them
MIRROR = True  # also match each training scan mirrored left-right
CANDIDATES = 6  # training scans per query the coarse stage keeps (with all their variants)
COARSE_SHIFT_PX = 1  # the coarse stage's search around the centred images
# Query rows per matrix product: keeps the (rows x references) block near 64 MB of float64.
_BLOCK_ELEMENTS = 8_000_000


def _zoom_matrix(size: int, factor: float, shift: float = 0.0) -> np.ndarray:
    """(size, size) bilinear weights that magnify a line by `factor` about its centre and move it
    by `shift` pixels; samples beyond the ends take the edge value."""
    centre = (size - 1) / 2
    source = np.clip(centre + (np.arange(size) - centre - shift) / factor, 0, size - 1)
    lo = np.minimum(np.floor(source).astype(int), size - 2)
    frac = source - lo
    m = np.zeros((size, size))
    m[np.arange(size), lo] = 1 - frac
    m[np.arange(size), lo + 1] += frac
    return m


def _subpixel(images: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """(N, H, W) moved by a fraction of a pixel (bilinear, edges extended)."""
    _, h, w = images.shape
    return _zoom_matrix(h, 1.0, dy) @ (images @ _zoom_matrix(w, 1.0, dx).T)


def zoom(images: np.ndarray, factor: float) -> np.ndarray:
    """(N, H, W) magnified by `factor` about the image centre (bilinear; edges extended)."""
    if factor == 1.0:
        return images
    _, h, w = images.shape
    return _zoom_matrix(h, factor) @ (images @ _zoom_matrix(w, factor).T)


@dataclasses.dataclass(frozen=True)
class Variant:
    """How a training scan was transformed to match: mirrored left-right, then zoomed."""

    mirrored: bool
    zoom: float


def variants(mirror: bool = MIRROR, zooms: tuple[float, ...] = ZOOMS) -> list[Variant]:
    return [Variant(m, z) for m in ((False, True) if mirror else (False,)) for z in zooms]


def _normalised_windows(x: np.ndarray, dy: int, dx: int, margin: int) -> np.ndarray:
    """The (H - 2m) x (W - 2m) window shifted by (dy, dx), z-scored per image, flattened."""
    _, h, w = x.shape
    crop = x[:, margin + dy : h - margin + dy, margin + dx : w - margin + dx].reshape(len(x), -1)
    crop = crop - crop.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.mean(crop**2, axis=1, keepdims=True))
    # A flat window has no pattern to match: it stays all zeros, rho = 0 with everything.
    return np.divide(crop, norm, out=np.zeros_like(crop), where=norm > 0)


def _centred(x: np.ndarray) -> np.ndarray:
    """(N, H, W) each moved by whole pixels so that the centroid of its brightness above black
    (x + 1) sits at the image centre; black (-1) comes in at the edges."""
    n, h, w = x.shape
    weight = np.clip(x + 1.0, 0.0, None)
    total = np.maximum(weight.sum(axis=(1, 2)), 1e-12)
    cy = weight.sum(axis=2) @ np.arange(h) / total
    cx = weight.sum(axis=1) @ np.arange(w) / total
    dys = np.clip(np.round((h - 1) / 2 - cy).astype(int), -(h // 4), h // 4)
    dxs = np.clip(np.round((w - 1) / 2 - cx).astype(int), -(w // 4), w // 4)
    out = np.full_like(x, -1.0)
    for i, (dy, dx) in enumerate(zip(dys, dxs)):
        out[i, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
            x[i, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


@dataclasses.dataclass(frozen=True)
class Matches:
    """Each query's nearest reference under the distance, and how it was matched."""

    distance: np.ndarray  # (N,) 0 = copy, ~1.41 = unrelated
    neighbour: np.ndarray  # (N,) index into the references
    shift: np.ndarray  # (N, 2) (dy, dx) of the query window, in reduced pixels
    mirrored: np.ndarray  # (N,) bool: the reference was mirrored
    zoom: np.ndarray  # (N,) the reference's magnification


def nearest(
    queries: Any,
    references: Any,
    *,
    side: int = DISTANCE_SIDE,
    max_shift_fraction: float = MAX_SHIFT_FRACTION,
    mirror: bool = MIRROR,
    zooms: tuple[float, ...] = ZOOMS,
    candidates: int = CANDIDATES,
) -> Matches:
    """For each query image, the nearest reference over shifts, zooms and the mirror.

    Every variant of every reference (`variants`) contributes its central window; every window of
    the query shifted by up to `max_shift_fraction` of the reduced shorter side is compared with
    them. A query that is a reference moved, zoomed by up to 10% or mirrored scores near 0.

    Two stages keep 1000 x 300 images at seconds: with every image centred on its centre of
    brightness (a shifted copy lands where its source does, +-1 px), each query keeps its
    `candidates` best-correlated reference variants (float32); then (float64, every shift of
    the images as they are) the best of those is the match. Queries and hold-out scans go
    through the same procedure, so the test's calibration does not depend on it being exact.
    """
    q = reduce(as_images(queries, "memorisation: queries", np.float64), side)
    r = reduce(as_images(references, "memorisation: references", np.float64), side)
    if q.shape[1:] != r.shape[1:]:
        raise UserError(f"memorisation: image sizes differ: {q.shape[1:]} vs {r.shape[1:]}")
    shorter = min(q.shape[1:])
    margin = min(int(round(max_shift_fraction * shorter)), (shorter - 1) // 2)
    kinds = variants(mirror, zooms)
    transformed = [zoom(r[:, :, ::-1] if v.mirrored else r, v.zoom) for v in kinds]
    bank = np.concatenate([_normalised_windows(t, 0, 0, margin) for t in transformed])  # (V*M, P)

    # Stage 1 (float32): each image moved so its centre of brightness is the image centre, then
    # every variant compared within +-COARSE_SHIFT_PX; each query keeps its best `candidates`.
    q_centred = _centred(q)
    bank_centred = np.concatenate([
        _normalised_windows(_centred(t), 0, 0, COARSE_SHIFT_PX) for t in transformed
    ]).astype(np.float32)
    keep = min(candidates, len(r))
    chosen = np.zeros((len(q), keep), dtype=np.int64)  # reference indices
    rows = max(1, _BLOCK_ELEMENTS // len(bank))
    for start in range(0, len(q), rows):
        block = q_centred[start : start + rows]
        best = np.full((len(block), len(bank)), -np.inf, dtype=np.float32)
        for dy in range(-COARSE_SHIFT_PX, COARSE_SHIFT_PX + 1):
            for dx in range(-COARSE_SHIFT_PX, COARSE_SHIFT_PX + 1):
                window = _normalised_windows(block, dy, dx, COARSE_SHIFT_PX).astype(np.float32)
                np.maximum(best, window @ bank_centred.T, out=best)
        per_reference = best.reshape(len(block), len(kinds), len(r)).max(axis=1)
        chosen[start : start + rows] = (np.argpartition(-per_reference, keep - 1, axis=1)[:, :keep]
                                        if keep < len(r) else np.arange(len(r)))
    # Every variant of each chosen reference: columns v * M + j of the bank.
    columns = (np.arange(len(kinds))[None, None, :] * len(r) + chosen[:, :, None]).reshape(len(q), -1)

    # Stage 2 (float64): every shift of the images as they are, against those columns.
    pixels = bank.shape[1]
    best_rho = np.full(len(q), -np.inf)
    best_column = np.zeros(len(q), dtype=np.int64)
    best_shift = np.zeros((len(q), 2), dtype=np.int64)
    rows = max(1, _BLOCK_ELEMENTS // (columns.shape[1] * pixels))
    for start in range(0, len(q), rows):
        block = slice(start, start + rows)
        refs = bank[columns[block]]  # (B, K * V, P)
        for dy in range(-margin, margin + 1):
            for dx in range(-margin, margin + 1):
                window = _normalised_windows(q[block], dy, dx, margin)
                rho = (refs @ window[:, :, None])[:, :, 0] / pixels
                k = np.argmax(rho, axis=1)
                value = rho[np.arange(len(k)), k]
                better = value > best_rho[block]
                best_rho[block] = np.where(better, value, best_rho[block])
                best_column[block] = np.where(better, columns[block][np.arange(len(k)), k],
                                              best_column[block])
                best_shift[block] = np.where(better[:, None], (dy, dx), best_shift[block])

    # Stage 3: half-pixel offsets of each query's best reference variant, around its best shift
    # (a copy moved by an odd number of pixels sits half a pixel off at the reduced size).
    source = np.stack(transformed)[best_column // len(r), best_column % len(r)]  # (N, H, W)
    around = [(ddy, ddx) for ddy in (-1, 0, 1) for ddx in (-1, 0, 1)]
    targets = np.clip(best_shift[:, None, :] + np.array(around)[None], -margin, margin)  # (N, 9, 2)
    windows = np.zeros((len(q), len(around), pixels))
    for dy, dx in np.unique(targets.reshape(-1, 2), axis=0):
        i, j = np.nonzero((targets[..., 0] == dy) & (targets[..., 1] == dx))
        windows[i, j] = _normalised_windows(q[i], dy, dx, margin)
    for oy, ox in [(oy, ox) for oy in (-0.5, 0.0, 0.5) for ox in (-0.5, 0.0, 0.5) if oy or ox]:
        ref = _normalised_windows(_subpixel(source, oy, ox), 0, 0, margin)
        rho = (windows @ ref[:, :, None])[:, :, 0] / pixels  # (N, 9)
        k = np.argmax(rho, axis=1)
        value = rho[np.arange(len(k)), k]
        better = value > best_rho
        best_rho = np.where(better, value, best_rho)
        best_shift = np.where(better[:, None], targets[np.arange(len(k)), k], best_shift)
    variant = [kinds[c] for c in best_column // len(r)]
    return Matches(
        distance=np.sqrt(np.clip(2.0 - 2.0 * best_rho, 0.0, None)),
        neighbour=best_column % len(r),
        shift=best_shift,
        mirrored=np.array([v.mirrored for v in variant], dtype=bool),
        zoom=np.array([v.zoom for v in variant], dtype=np.float64),
    )
