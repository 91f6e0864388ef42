"""A figure cut from a paper -> the CT slice alone, at the target size.

Pure numpy/Pillow/scipy functions. Everything a figure carries besides the slice (panel letters,
scanner text, rulers, arrows in the margin, white frames, a neighbouring panel, a scout x-ray
inset) sits outside the body, which `anatomy` finds. So: paint out colour marks, find the body
(and the lung field), crop to it with a margin, black out what lies outside the hull, stretch the
intensities inside it (window/level differs per paper), paint out corner text, pad to the target
aspect and resize with antialiasing.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image
from scipy import ndimage

from tfds_covidct.covid_ct.anatomy import (
    find_body,
    find_lungs,
    otsu,
    trim_uniform_borders,  # noqa: F401  (cleaning's callers use it)
)

WORK_FACTOR = 3  # crops are cleaned at up to this many times the target size, then resized
MAX_UPSCALE = 4.0  # a crop that must be enlarged more than this is refused: it would invent detail
CORNER = 0.25  # corner squares (fraction of the crop's shorter side) where letters and text sit
MARK_WHITE = 230  # a corner mark is drawn at least this white (after normalisation)...
MARK_AIR = 40  # ...on a background at most this dark
# no_scan_content: the image is shrunk to 32x32 (Pillow BOX, i.e. block means) and the standard
# deviation of those 1024 means, in 8-bit grey levels, is its coarse contrast. A CT slice (a body
# on black air, lungs inside) scores 40-110 (min over the 809 real scans: see bench); a flat image
# scores 0 and pixel noise averages away (the cases' faint noise: 0.5).
CONTENT_SIDE = 32
MIN_COARSE_CONTRAST = 8.0
FRAMINGS = ("body", "lungs")


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


def _clip_box(box: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    h, w = shape
    x0, x1 = max(0, min(x0, w - 1)), max(1, min(x1, w))
    y0, y1 = max(0, min(y0, h - 1)), max(1, min(y1, h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"crop box {box} is empty inside a {w}x{h} image")
    return x0, y0, x1, y1
