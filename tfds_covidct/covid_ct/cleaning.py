"""A figure cut from a paper -> the CT slice alone, at the target size.

Pure numpy/Pillow/scipy functions. The CT slice is the largest bright region on a dark background
(the body in a lung or soft-tissue window). Everything else a figure carries sits outside it:
panel letters, scanner text, rulers, arrows in the margin, white frames, a neighbouring panel, a
scout x-ray inset. So: paint out colour marks, trim uniform borders, find the body on a small
working copy (threshold, opening to cut thin text and lines, largest component, convex hull), crop
to the hull with a margin, black out what lies outside the hull, stretch the intensities inside it
(window/level differs per paper), pad to the target aspect and resize with antialiasing.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

WORK_SIDE = 256  # body detection runs on a copy whose longer side is at most this many pixels
WORK_FACTOR = 3  # crops are cleaned at up to this many times the target size, then resized
MARGIN = 0.04  # crop margin around the body, as a fraction of the body's longer side
MIN_BODY_FRACTION = 0.05
JOIN_DISTANCE = 0.03  # body fragments within this share of the image side of the largest...
JOIN_AREA = 0.1  # ...and at least this share of its area are joined to it  # a "body" smaller than this share of the image is not trusted
MAX_UPSCALE = 4.0  # a crop that must be enlarged more than this is refused: it would invent detail
CORNER = 0.25  # corner squares (fraction of the crop's shorter side) where letters and text sit
MARK_WHITE = 230  # a corner mark is drawn at least this white (after normalisation)...
MARK_AIR = 40  # ...on a background at most this dark
BORDER_STD = 6.0  # an edge row/column with less spread than this is frame or margin, not scan
# no_scan_content: the image is shrunk to 32x32 (Pillow BOX, i.e. block means) and the standard
# deviation of those 1024 means, in 8-bit grey levels, is its coarse contrast. A CT slice (a body
# on black air, lungs inside) scores 40-110 (min over the 809 real scans: see bench); a flat image
# scores 0 and pixel noise averages away (the cases' faint noise: 0.5).
CONTENT_SIDE = 32
MIN_COARSE_CONTRAST = 8.0
FRAMINGS = ("body", "lungs")
LUNG_MARGIN = 0.05  # lung box margin, as a fraction of the lung field's longer side
LUNG_MIN_AREA = 0.015  # a dark blob smaller than this share of the body is not a lung
LUNG_JOIN = 0.25  # blobs at least this share of the largest one's area are lungs too
LUNG_MAX_RIM = 0.3  # a dark blob with more than this share in the hull's outer 3% is outside air


@dataclasses.dataclass(frozen=True)
class Cleaned:
    """The cleaned scan and how it was made (for the audit)."""

    image: np.ndarray  # (H, W) uint8, the target size
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the crop used, in the original image
    upscale: float  # > 1 when the crop was enlarged to reach the target size
    notes: tuple[str, ...]  # what the cleaning had to do beyond the usual
    body_box: tuple[int, int, int, int] | None = None  # the body crop (framing "body")
    lung_box: tuple[int, int, int, int] | None = None  # the lung-field crop (framing "lungs")


def coarse_contrast(gray: np.ndarray) -> float:
    """The no_scan_content measure of a (H, W) uint8 image, in grey levels (see MIN_COARSE_CONTRAST):
    the standard deviation of its 32x32 block means (Pillow BOX resize)."""
    small = np.asarray(Image.fromarray(gray).resize((CONTENT_SIDE, CONTENT_SIDE), Image.BOX), np.float32)
    return float(small.std())


class TooSmallError(ValueError):
    """The crop would have to be enlarged more than MAX_UPSCALE times."""


def clean(
    gray: np.ndarray,
    colour_mask: np.ndarray | None,
    size: tuple[int, int],
    box: tuple[int, int, int, int] | None = None,
    framing: str = "body",
) -> Cleaned:
    """Cleans a decoded scan to `size` = (height, width).

    Args:
      gray: (H, W) uint8.
      colour_mask: (H, W) bool, drawn colour marks to paint out, or None.
      size: target (height, width).
      box: a curated crop (x0, y0, x1, y1); when given, no body or lung detection runs.
      framing: "body" (the whole body slice) or "lungs" (the lung field, `find_lungs`: scanner
        text, table and arms left outside). Both boxes are found and returned either way.

    Raises:
      TooSmallError: the crop would be enlarged more than MAX_UPSCALE times.
      ValueError: a curated box outside the image, or an unknown framing.
    """
    if framing not in FRAMINGS:
        raise ValueError(f"framing {framing!r} is not one of {FRAMINGS}")
    notes = []
    if colour_mask is not None and colour_mask.any():
        gray = inpaint(gray, ndimage.binary_dilation(colour_mask, iterations=1))
        notes.append(f"colour_marks_removed:{int(colour_mask.sum())}px")
    body_box = lung_box = None
    if box is None:
        box, weight, found = find_body(gray)
        body_box = box
        if not found:
            notes.append("no_body_found:kept_trimmed_frame")
        else:
            lung_box = find_lungs(gray, box, weight)
        if framing == "lungs":
            if lung_box is None:
                notes.append("no_lungs_found:kept_body_box")
            else:
                lx0, ly0, lx1, ly1 = lung_box
                weight = weight[ly0 - box[1]:ly1 - box[1], lx0 - box[0]:lx1 - box[0]]
                box = lung_box
    else:
        box = _clip_box(box, gray.shape)
        weight = np.ones((box[3] - box[1], box[2] - box[0]), np.float32)
        notes.append("curated_crop")
    x0, y0, x1, y1 = box
    crop, weight = _reduce(gray[y0:y1, x0:x1], weight, size)
    crop = normalise(crop, weight)
    crop, marks = remove_corner_marks(crop)
    if marks:
        notes.append(f"corner_marks_removed:{marks}")
    padded = pad_to_aspect(crop, size[1] / size[0])
    upscale = max(size[0] / padded.shape[0], size[1] / padded.shape[1])
    if upscale > MAX_UPSCALE:
        raise TooSmallError(
            f"crop {x1 - x0}x{y1 - y0} px would be enlarged x{upscale:.1f} to {size[1]}x{size[0]} "
            f"(limit x{MAX_UPSCALE:g})")
    if upscale > 1.0:
        notes.append(f"upscaled:x{upscale:.1f}")
    image = resize(padded, size)
    return Cleaned(image=image, box=box, upscale=upscale, notes=tuple(notes), body_box=body_box,
                   lung_box=lung_box)


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


def inpaint(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replaces masked pixels with the nearest unmasked pixel's value (marks are thin lines)."""
    if mask.all():
        return gray
    _, (rows, cols) = ndimage.distance_transform_edt(mask, return_indices=True)
    return gray[rows, cols]


def remove_corner_marks(crop: np.ndarray) -> tuple[np.ndarray, int]:
    """Paints out panel letters and scanner text ("2B", "A", "Pt 2") left in a corner of the crop.

    They survive the crop when the body fills the frame. A blob is taken for a mark only if it is
    wholly inside a corner square (the body always reaches out of one), white (text is drawn at
    full white), and sits on near-black air: a vessel in a lung that reaches the corner is gray
    on gray and stays. Returns the crop and the number of blobs painted out.
    """
    h, w = crop.shape
    side = int(CORNER * min(h, w))
    if side < 3:
        return crop, 0
    bright = crop > max(otsu(crop), MARK_WHITE // 2)
    labels, count = ndimage.label(bright)
    remove = np.zeros(count + 1, bool)
    for index, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        in_corner = (rows.stop <= side or rows.start >= h - side) and (
            cols.stop <= side or cols.start >= w - side)
        if not in_corner:
            continue
        r0, r1 = max(0, rows.start - 3), min(h, rows.stop + 3)
        c0, c1 = max(0, cols.start - 3), min(w, cols.stop + 3)
        blob = labels[r0:r1, c0:c1] == index
        patch = crop[r0:r1, c0:c1]
        ring = ndimage.binary_dilation(blob, iterations=3) & ~bright[r0:r1, c0:c1]
        remove[index] = (patch[blob].max() >= MARK_WHITE and ring.any()
                         and np.median(patch[ring]) <= MARK_AIR)
    if not remove.any():
        return crop, 0
    mask = ndimage.binary_dilation(remove[labels], iterations=2)
    return inpaint(crop, mask), int(remove.sum())


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


def normalise(crop: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Stretches the 1st..99th percentile inside the body to 0..255; outside the body goes black."""
    inside = crop[weight > 0.5]
    if inside.size == 0:
        inside = crop.ravel()
    lo, hi = np.percentile(inside, [1.0, 99.0])
    if hi - lo < 1.0:
        lo, hi = float(inside.min()), float(inside.max()) + 1.0
    stretched = np.clip((crop.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0.0, 255.0)
    return np.rint(stretched * weight).astype(np.uint8)


def pad_to_aspect(image: np.ndarray, aspect: float) -> np.ndarray:
    """Pads with black (CT air) on both sides so that width / height == aspect; never crops."""
    h, w = image.shape
    if w / h < aspect:
        new_h, new_w = h, int(round(h * aspect))
    else:
        new_h, new_w = int(round(w / aspect)), w
    top, left = (new_h - h) // 2, (new_w - w) // 2
    out = np.zeros((new_h, new_w), np.uint8)
    out[top:top + h, left:left + w] = image
    return out


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes to (height, width); Pillow's Lanczos widens its kernel when shrinking (antialiased)."""
    if image.shape == tuple(size):
        return image
    out = Image.fromarray(image).resize((size[1], size[0]), Image.LANCZOS, reducing_gap=3.0)
    return np.asarray(out)


def _reduce(crop: np.ndarray, weight: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Shrinks a crop far larger than the target to WORK_FACTOR x the target first: the later steps
    cost per pixel, and the final Lanczos resize still has enough pixels to antialias from."""
    scale = WORK_FACTOR * max(size) / max(crop.shape)
    if scale >= 1.0:
        return crop, weight
    shape = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = np.asarray(Image.fromarray(crop).resize(shape, Image.BOX))
    small_weight = np.asarray(Image.fromarray(weight).resize(shape, Image.BILINEAR))
    return small, small_weight


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


def _clip_box(box: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    h, w = shape
    x0, x1 = max(0, min(x0, w - 1)), max(1, min(x1, w))
    y0, y1 = max(0, min(y0, h - 1)), max(1, min(y1, h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"crop box {box} is empty inside a {w}x{h} image")
    return x0, y0, x1, y1
