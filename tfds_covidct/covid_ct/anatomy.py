"""Where the CT slice is in a figure: the body, and the lung field inside it.

Pure numpy/Pillow/scipy functions on (H, W) uint8 images. The CT slice is the largest bright
region on a dark background (the body in a lung or soft-tissue window): threshold (Otsu), opening
to cut thin text and lines, largest component (fragments of a thin chest wall joined), convex hull.
The lungs are the large dark regions enclosed by that hull. `cleaning` crops to either.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

WORK_SIDE = 256  # body detection runs on a copy whose longer side is at most this many pixels
MARGIN = 0.04  # crop margin around the body, as a fraction of the body's longer side
MIN_BODY_FRACTION = 0.05  # a "body" smaller than this share of the image is not trusted
JOIN_DISTANCE = 0.03  # body fragments within this share of the image side of the largest...
JOIN_AREA = 0.1  # ...and at least this share of its area are joined to it
BORDER_STD = 6.0  # an edge row/column with less spread than this is frame or margin, not scan
LUNG_MARGIN = 0.05  # lung box margin, as a fraction of the lung field's longer side
LUNG_MIN_AREA = 0.015  # a dark blob smaller than this share of the body is not a lung
LUNG_JOIN = 0.25  # blobs at least this share of the largest one's area are lungs too
LUNG_MAX_RIM = 0.3  # a dark blob with more than this share in the hull's outer 3% is outside air


def find_body(gray: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray, bool]:
    """Finds the CT slice in a figure.

    Returns the crop box in original coordinates, a float weight map over the box (1 inside the
    body hull plus margin, 0 outside: what lies outside is blacked out), and whether a body was
    found (if not, the box is the frame without its flat borders and the weight is all ones).
    """
    tx0, ty0, tx1, ty1 = trim_uniform_borders(gray)
    region = gray[ty0:ty1, tx0:tx1]
    scale = min(1.0, WORK_SIDE / max(region.shape))
    small = _shrink(region, scale)
    hull = body_hull(small)
    if hull is None:
        box = (tx0, ty0, tx1, ty1)
        return box, np.ones((ty1 - ty0, tx1 - tx0), np.float32), False

    margin = max(1, int(round(MARGIN * max(_extent(hull)))))
    grown = ndimage.binary_dilation(hull, iterations=margin)
    ys, xs = np.nonzero(grown)
    sx0, sy0, sx1, sy1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    # Back to original coordinates (inside the trimmed region), rounded outwards.
    x0 = tx0 + int(np.floor(sx0 / scale))
    y0 = ty0 + int(np.floor(sy0 / scale))
    x1 = min(tx1, tx0 + int(np.ceil(sx1 / scale)))
    y1 = min(ty1, ty0 + int(np.ceil(sy1 / scale)))
    weight = Image.fromarray((grown[sy0:sy1, sx0:sx1] * 255).astype(np.uint8))
    weight = np.asarray(weight.resize((x1 - x0, y1 - y0), Image.BILINEAR), np.float32) / 255.0
    return (x0, y0, x1, y1), weight, True


def body_hull(small: np.ndarray) -> np.ndarray | None:
    """The convex hull (bool mask) of the largest bright blob, or None if there is no plausible one."""
    threshold = otsu(small)
    bright = small > threshold
    radius = max(1, int(round(min(small.shape) * 0.012)))
    disk = _disk(radius)
    # Close small gaps in the chest wall first, then open to cut away text, lines and arrows.
    bright = ndimage.binary_closing(bright, structure=_disk(1), border_value=0)
    bright = ndimage.binary_opening(bright, structure=disk)
    labels, count = ndimage.label(bright)
    if count == 0:
        return None
    areas = ndimage.sum_labels(bright, labels, index=np.arange(1, count + 1))
    best = int(np.argmax(areas)) + 1
    if areas[best - 1] < MIN_BODY_FRACTION * small.size:
        return None
    # A thin chest wall breaks into pieces: big blobs touching the largest one's box (grown a
    # little) are the same body. A neighbouring panel or an inset sits further away or is small.
    rows, cols = ndimage.find_objects(labels)[best - 1]
    grow = int(round(JOIN_DISTANCE * max(small.shape)))
    r0, r1 = max(0, rows.start - grow), rows.stop + grow
    c0, c1 = max(0, cols.start - grow), cols.stop + grow
    keep = np.zeros(count + 1, bool)
    for index, (rs, cs) in enumerate(ndimage.find_objects(labels), start=1):
        near = rs.start < r1 and rs.stop > r0 and cs.start < c1 and cs.stop > c0
        keep[index] = index == best or (near and areas[index - 1] >= JOIN_AREA * areas[best - 1])
    return convex_hull_mask(keep[labels])


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of a bool mask (lungs are dark holes in the bright body: fill them)."""
    edge = mask & ~ndimage.binary_erosion(mask)  # the hull of a shape is the hull of its edge
    ys, xs = np.nonzero(edge)
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    # Pixel corners, so a one-pixel-wide shape still has an area.
    corners = np.concatenate([points, points + [1, 0], points + [0, 1], points + [1, 1]])
    try:
        hull = ConvexHull(corners)
    except QhullError:
        return mask.copy()
    canvas = Image.new("1", (mask.shape[1], mask.shape[0]), 0)
    vertices = [tuple(corners[i] - 0.5) for i in hull.vertices]
    ImageDraw.Draw(canvas).polygon(vertices, fill=1, outline=1)
    return np.asarray(canvas, bool) | mask


def find_lungs(gray: np.ndarray, body_box: tuple[int, int, int, int],
               weight: np.ndarray) -> tuple[int, int, int, int] | None:
    """The lung-field box (x0, y0, x1, y1) in original pixels, inside `body_box`, or None.

    The lungs are the large dark regions enclosed by the body: on a working copy of the body crop
    (longer side <= WORK_SIDE), pixels inside the body hull darker than Otsu's threshold of the
    pixels of the hull shrunk by 3%, opened to drop noise; a blob with more than LUNG_MAX_RIM of
    its pixels in the hull's outer 3% rim is the air around the body (the table gap, the space
    between the arms), not lung; a lung cut by a tight figure crop still counts. The lungs are the largest blob and every blob
    at least LUNG_JOIN of its area (the other lung, a lung split by a fissure); the box is their
    bounding box plus LUNG_MARGIN. Scanner text, rulers and the table lie outside the body hull,
    hence outside this box. `weight` is find_body's (h, w) hull weight over `body_box`.
    """
    x0, y0, x1, y1 = body_box
    crop = gray[y0:y1, x0:x1]
    scale = min(1.0, WORK_SIDE / max(crop.shape))
    small = _shrink(crop, scale)
    hull = np.asarray(Image.fromarray((weight > 0.5).astype(np.uint8) * 255).resize(
        (small.shape[1], small.shape[0]), Image.NEAREST)) > 0
    shrink = max(1, int(round(0.03 * max(small.shape))))
    inner = ndimage.binary_erosion(hull, iterations=shrink)
    if inner.sum() < 100:
        return None
    dark = (small < otsu(small[inner])) & hull
    dark = ndimage.binary_opening(dark, structure=_disk(max(1, int(round(0.006 * max(small.shape))))))
    labels, count = ndimage.label(dark)
    if count == 0:
        return None
    areas = ndimage.sum_labels(dark, labels, index=np.arange(1, count + 1))
    rim = ndimage.sum_labels(dark & ~inner, labels, index=np.arange(1, count + 1))
    areas[rim > LUNG_MAX_RIM * areas] = 0  # mostly in the hull's rim: air around the body
    best = float(areas.max())
    if best < LUNG_MIN_AREA * inner.sum():
        return None
    keep = np.zeros(count + 1, bool)
    keep[1:] = areas >= max(LUNG_JOIN * best, LUNG_MIN_AREA * inner.sum())
    ys, xs = np.nonzero(keep[labels])
    margin = LUNG_MARGIN * max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    lx0 = x0 + max(0, int(np.floor((xs.min() - margin) / scale)))
    ly0 = y0 + max(0, int(np.floor((ys.min() - margin) / scale)))
    lx1 = min(x1, x0 + int(np.ceil((xs.max() + 1 + margin) / scale)))
    ly1 = min(y1, y0 + int(np.ceil((ys.max() + 1 + margin) / scale)))
    if lx1 - lx0 < 8 or ly1 - ly0 < 8:
        return None
    return lx0, ly0, lx1, ly1


def trim_uniform_borders(gray: np.ndarray) -> tuple[int, int, int, int]:
    """The box left after peeling off edge rows/columns that are flat (frames, margins, bars)."""
    h, w = gray.shape
    rows_flat = gray.std(axis=1) < BORDER_STD
    cols_flat = gray.std(axis=0) < BORDER_STD
    if rows_flat.all() or cols_flat.all():  # a flat image has no border to peel off
        return 0, 0, w, h
    y0 = _run_length(rows_flat, h // 3)
    y1 = h - _run_length(rows_flat[::-1], h // 3)
    x0 = _run_length(cols_flat, w // 3)
    x1 = w - _run_length(cols_flat[::-1], w // 3)
    return x0, y0, x1, y1


def _run_length(flags: np.ndarray, limit: int) -> int:
    """How many leading entries are True, capped at `limit`."""
    n = int(np.argmin(flags)) if not flags.all() else len(flags)
    return min(n, limit)


def otsu(values: np.ndarray) -> float:
    """Otsu's threshold of a uint8 image: the split that best separates body from background."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * levels)
    mean_all = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_all * w0 / total - m0) ** 2 / (w0 * w1)
    between = np.nan_to_num(between, nan=0.0, posinf=0.0)
    return float(np.argmax(between))


def _shrink(image: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return image
    h, w = image.shape
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return np.asarray(Image.fromarray(image).resize(size, Image.BOX))


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return xx * xx + yy * yy <= radius * radius + radius


def _extent(mask: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
