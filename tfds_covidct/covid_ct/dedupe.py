"""Exact and near duplicates across all sources and labels: group each family, keep one.

The public sources overlap: the Kaggle archive and the UCSD folders are the same files; the
covid-chestxray-dataset holds crops of the same paper figures; public mirrors of COVID-CT hold the
same scans re-cropped by a few percent per side, rescaled and re-encoded. A family is every file
that shows the same pixels of the same scan, whatever its crop, size, encoding or label.

Method (two stages, as in near-duplicate image search: a cheap coarse index for candidates, then an
exact check of each candidate on small normalised thumbnails):

1. Every scan gets a `thumbnail`: its frame (the image without flat borders, cleaning's
   `trim_uniform_borders`; not the body crop, which moves when a copy is re-cropped) shrunk to
   64x64 (Pillow BOX).
2. Exact copies share the sha256 of their bytes.
3. Coarse candidates: the 8x8 average of each thumbnail, zero-mean and unit-norm (a 64-d vector;
   Euclidean distance d gives correlation 1 - d^2/2). A k-d tree (scipy `cKDTree`) returns for
   each scan its COARSE_NEIGHBOURS nearest scans within COARSE_MIN_CORRELATION. A crop of a few
   percent per side moves the 8x8 cells by a fraction of a cell, so copies stay close.
4. Verification of each candidate pair, batched in numpy: the two thumbnails are aligned by a
   separate scale and shift per axis (each side of one may be cut by up to MAX_CROP of the other:
   the intensity profiles along x and along y are matched over a grid of crops, coarse then
   fine), then the aligned thumbnails are compared by correlation of their detail on the overlap:
   a band-pass (each thumbnail smoothed by sigma 0.7 px minus its blur by sigma 2.5 px). The
   light smoothing matters: the aligned copy has been resampled (linear interpolation blurs it) and
   its 64x64 grid falls between the other's pixels; without it, the finest band is dominated by
   that asymmetry and by JPEG noise, and genuine copies score 0.93-0.96 instead of 0.98-0.99. Copies, even re-cropped and
   re-encoded, agree to >= NEAR_DETAIL_CORRELATION; slices of one patient, which share the body
   outline and correlate 0.95-0.98 as plain thumbnails, differ in the vessels and airways that
   the detail image holds (except slices 1 mm apart: see the figures below).
5. Families are the connected components (union-find) of exact and verified pairs.

Cost: O(N) thumbnails, O(N log N) for the tree, O(N k) verifications of a fixed cost, so linear
in N for a bounded k: ~1.3 ms per verified pair on one core, ~6 pairs per scan on covidct-full.
Which copy is kept does not depend on the order files were found: the one with the most pixels,
then the smallest sha256.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image
from scipy.spatial import cKDTree

from tfds_covidct.covid_ct.alignment import THUMB_SIDE, verify
from tfds_covidct.covid_ct.disjoint import MinRootSets

COARSE_SIDE = 8  # the 64x64 thumbnail (alignment.THUMB_SIDE) is indexed by its 8x8 average
COARSE_NEIGHBOURS = 10  # candidates per scan from the index (nearest first)
COARSE_MIN_CORRELATION = 0.80  # candidates must correlate at least this much at 8x8
# Measured on the 809 scans of covidct-full (python -m bench.sources --dedupe, and the index's
# candidate pairs among the originals): synthetic degraded copies of every scan (crop 0-5% per
# side, rescale 0.7-1.3x, JPEG q75-95) score median 0.99 (0.956 with the unsmoothed detail of
# 2.0.0). Different scans: every pair linked before is still linked; two new links, both true copies
# (kjr-21-e24-p2-8.png = the chest-x-ray dataset's kjr-21-e24-g001-l-c.jpg, 0.990; a figure of
# 2020.03.22.20040782 repeated on pages 24 and 25, 0.984); adjacent slices of one NonCOVID patient
# (660..663, 1330/1332) score 0.95-0.975 and stay apart, hence the cut above them (1-mm-adjacent
# medpix slices, 0.96-0.99 already before, are still grouped as one family).
NEAR_DETAIL_CORRELATION = 0.978


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 crop -> (64, 64) uint8 thumbnail both de-duplication stages use (Pillow BOX)."""
    return np.asarray(Image.fromarray(gray).resize((THUMB_SIDE, THUMB_SIDE), Image.BOX))


# Kept for callers of the 1.x API: the signature is the thumbnail.
signature = thumbnail
SIGNATURE_SIDE = THUMB_SIDE


@dataclasses.dataclass(frozen=True)
class Candidate:
    """What de-duplication needs to know about one decoded file."""

    id: str  # unique per input (e.g. its source-relative path)
    sha256: str
    signature: np.ndarray  # (64, 64) uint8, from `thumbnail`
    pixels: int  # width * height of the original


@dataclasses.dataclass(frozen=True)
class Duplicate:
    """`id` is a copy of `of` (the family's keeper).

    `kind` is 'exact' (same bytes) or 'near'; for a near copy, `correlation` is the detail
    correlation of the verified link that joined it and `crop` the alignment found
    ("x:+0.016..-0.002 y:+0.000..+0.000": how far each side of the other copy is cut, as a share
    of its extent; positive = this copy shows less).
    """

    id: str
    of: str
    kind: str
    correlation: float = 1.0
    crop: str = ""
    via: str = ""  # the family member it was verified against (may differ from the keeper)


@dataclasses.dataclass(frozen=True)
class Link:
    """A verified pair: `a` and `b` show the same scan."""

    a: int
    b: int
    correlation: float
    crop: str


def find_duplicates(candidates: list[Candidate],
                    near_correlation: float = NEAR_DETAIL_CORRELATION) -> list[Duplicate]:
    """Groups exact and near copies; returns one Duplicate per file that is not kept.

    Near copies are grouped transitively (A~B, B~C puts A, B, C in one family).
    """
    if not candidates:
        return []
    order = sorted(range(len(candidates)), key=lambda i: _rank(candidates[i]))
    ranked = [candidates[i] for i in order]
    families = MinRootSets()  # indices by rank: the better-ranked file stays the root
    root, join = families.root, families.join

    by_sha: dict[str, int] = {}
    for i, c in enumerate(ranked):
        if c.sha256 in by_sha:
            join(by_sha[c.sha256], i)
        else:
            by_sha[c.sha256] = i
    thumbs = np.stack([c.signature for c in ranked]).astype(np.float32)
    evidence: dict[int, Link] = {}
    for link in near_links(thumbs, near_correlation):
        join(link.a, link.b)
        for k in (link.a, link.b):
            if k not in evidence or link.correlation > evidence[k].correlation:
                evidence[k] = link

    result = []
    for i, c in enumerate(ranked):
        keeper = ranked[root(i)]
        if keeper.id == c.id:
            continue
        if keeper.sha256 == c.sha256:
            result.append(Duplicate(id=c.id, of=keeper.id, kind="exact"))
            continue
        link = evidence.get(i)
        if link is None:  # joined through an exact twin of a near copy
            twin = by_sha[c.sha256]
            link = evidence.get(twin, Link(twin, twin, 1.0, ""))
        other = link.b if link.a == i else link.a
        result.append(Duplicate(id=c.id, of=keeper.id, kind="near", correlation=round(link.correlation, 4),
                                crop=link.crop if link.a == i else _flip(link.crop), via=ranked[other].id))
    return result


def families(candidates: list[Candidate], duplicates: list[Duplicate]) -> dict[str, str]:
    """id -> its family's keeper id, for every candidate (a keeper maps to itself)."""
    out = {c.id: c.id for c in candidates}
    out.update({d.id: d.of for d in duplicates})
    return out


def coarse_vectors(thumbs: np.ndarray) -> np.ndarray:
    """(N, 64, 64) thumbnails -> (N, 64) zero-mean unit-norm 8x8 averages (flat ones are zero)."""
    n = len(thumbs)
    f = COARSE_SIDE
    small = thumbs.reshape(n, f, THUMB_SIDE // f, f, THUMB_SIDE // f).mean(axis=(2, 4)).reshape(n, -1)
    small = small - small.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(small, axis=1, keepdims=True)
    return (small / np.where(norms > 1e-6, norms, np.inf)).astype(np.float64)


def candidate_pairs(thumbs: np.ndarray, neighbours: int = COARSE_NEIGHBOURS,
                    min_correlation: float = COARSE_MIN_CORRELATION) -> np.ndarray:
    """(P, 2) int array of index pairs i < j worth verifying, from a k-d tree of coarse vectors."""
    n = len(thumbs)
    if n < 2:
        return np.zeros((0, 2), int)
    vectors = coarse_vectors(thumbs)
    radius = np.sqrt(2.0 * (1.0 - min_correlation))
    k = min(neighbours + 1, n)
    distances, index = cKDTree(vectors).query(vectors, k=k, distance_upper_bound=radius)
    rows = np.repeat(np.arange(n), k)
    cols, ok = index.ravel(), np.isfinite(distances.ravel())
    rows, cols = rows[ok], cols[ok]
    keep = rows != cols
    flat = (vectors ** 2).sum(axis=1) > 0.5  # flat thumbnails have no vector to match
    keep &= flat[rows] & flat[cols]
    pairs = np.stack([np.minimum(rows, cols), np.maximum(rows, cols)], axis=1)[keep]
    return np.unique(pairs, axis=0) if len(pairs) else np.zeros((0, 2), int)


def near_links(thumbs: np.ndarray, near_correlation: float = NEAR_DETAIL_CORRELATION,
               batch: int = 4096) -> list[Link]:
    """Every candidate pair of (N, 64, 64) float thumbnails that verifies as the same scan."""
    pairs = candidate_pairs(thumbs)
    links = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start:start + batch]
        scores, crops = verify(thumbs[chunk[:, 0]], thumbs[chunk[:, 1]])
        for (i, j), score, crop in zip(chunk.tolist(), scores.tolist(), crops):
            if score >= near_correlation:
                links.append(Link(i, j, score, crop))
    return links


def _flip(crop: str) -> str:
    """The same alignment seen from the other copy (signs reversed, approximately)."""
    if not crop:
        return crop
    return crop.replace("+", "#").replace("-", "+").replace("#", "-")


def _rank(c: Candidate) -> tuple[int, str, str]:
    return (-c.pixels, c.sha256, c.id)
