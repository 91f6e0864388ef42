"""Slice selection, shared by the DICOM and NIfTI readers: which axial slices of a volume go into
the dataset, and the values every reader returns.

The lung area of a slice is the dark (< LUNG_HU) region enclosed by the body (> BODY_HU, largest
component, holes filled) on a working copy of at most WORK_SIDE pixels. Slices whose lung area is
at least `lung_fraction` of the volume's largest are "through the lungs"; the chosen slices are
spread evenly from the lowest to the highest of them, at least `min_gap_mm` apart, so that
neighbours are not near-copies (1-mm neighbours correlate 0.96-0.99; 10 mm apart the vessels and
airways differ).

Streaming: pass 1 reads every slice once (in file order) and keeps only its lung area; pass 2
re-reads the chosen slices. Memory is one slice plus a float per slice, whatever the volume's size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

BODY_HU = -500.0  # denser than this is body (soft tissue -100..100, bone 300+; lung -950..-500)
LUNG_HU = -400.0  # lung parenchyma (even with ground glass, -700..-300) inside the body is below this
WORK_SIDE = 128  # lung areas are measured on a copy whose longer side is at most this
MIN_LUNG_AREA_MM2 = 1500.0  # largest lung area below this (about 4 x 4 cm): no lungs in the volume
MIN_SLICES = 8  # fewer slices than this is a localizer or a stray image, not a volume
GAP_TOLERANCE = 1.5  # a step between slices over this many times the median step: slices missing


@dataclasses.dataclass(frozen=True)
class Options:
    """How slices are taken from a volume (the build's knobs; defaults in the README).

    slices: at most this many slices per volume.
    window_width, window_level: the lung window in Hounsfield units (W 1500 / L -600: air black,
      lung parenchyma dark grey, ground glass lighter, soft tissue near white).
    min_gap_mm: chosen slices are at least this far apart along the body axis.
    lung_fraction: a slice is "through the lungs" when its lung area is at least this share of the
      volume's largest.
    """

    slices: int = 8
    window_width: float = 1500.0
    window_level: float = -600.0
    min_gap_mm: float = 10.0
    lung_fraction: float = 0.5

    def describe(self) -> str:
        return (f"{self.slices} slices >= {self.min_gap_mm:g} mm apart with lung area >= "
                f"{self.lung_fraction:g} of the largest, window W {self.window_width:g} / "
                f"L {self.window_level:g} HU")


class VolumeError(ValueError):
    """A volume that cannot give slices; `reason` is a short stable code for the audit."""

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")

    def __reduce__(self):
        # Rebuilt from its two fields: the default (from args, the joined message) would call
        # __init__ with one argument, so a worker pool or Ray could not pass it back.
        return type(self), (self.reason, self.detail)


@dataclasses.dataclass(frozen=True)
class Slice:
    """One chosen axial slice: `gray` (H, W) uint8 in the lung window, radiological orientation.

    `index` counts from the most inferior slice (0) of `count`; `z_mm` is its position along the
    body axis; `lung_mm2` its lung area; `hu` its Hounsfield units (float32, same shape).
    """

    index: int
    count: int
    z_mm: float
    lung_mm2: float
    gray: np.ndarray
    hu: np.ndarray

    def describe(self) -> str:
        return f"slice {self.index}/{self.count} z={self.z_mm:.1f}mm lungs={self.lung_mm2 / 100:.0f}cm2"


@dataclasses.dataclass(frozen=True)
class Volume:
    """What a reader found: the chosen slices and what the audit should say about the volume."""

    format: str  # "DICOM" or "NIfTI"
    shape: tuple[int, int, int]  # (slices, rows, columns) in radiological order
    spacing_mm: tuple[float, float, float]  # (between slices, between rows, between columns)
    patient: str  # DICOM PatientID ("" when absent, always for NIfTI)
    series: str  # DICOM SeriesInstanceUID ("" for NIfTI)
    slices: tuple[Slice, ...]
    lung_range: tuple[int, int]  # first and last slice index through the lungs
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        taken = ",".join(str(s.index) for s in self.slices)
        return (f"{self.format} {self.shape[0]}x{self.shape[1]}x{self.shape[2]} "
                f"({self.spacing_mm[0]:.2f} mm slices); lungs in slices {self.lung_range[0]}.."
                f"{self.lung_range[1]}; took {len(self.slices)}: {taken}")


def window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Hounsfield units -> uint8: level - width/2 is 0, level + width/2 is 255, linear, clipped."""
    low = level - width / 2.0
    scaled = (np.asarray(hu, np.float32) - low) * (255.0 / width)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The body of one axial slice (HU): the largest region denser than BODY_HU (bool, same shape;
    all False when there is none). NaN is never body."""
    body = hu > BODY_HU
    labels, count = ndimage.label(body)
    if count == 0:
        return body
    sizes = ndimage.sum_labels(body, labels, index=np.arange(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def lung_area_mm2(hu: np.ndarray, pixel_mm: tuple[float, float]) -> float:
    """The area (mm^2) of the dark regions enclosed by the body in one axial slice (HU)."""
    step = max(1, int(np.ceil(max(hu.shape) / WORK_SIDE)))
    small = hu[::step, ::step]
    body = body_mask(small)
    if not body.any():
        return 0.0
    lungs = ndimage.binary_fill_holes(body) & ~body & (small < LUNG_HU)
    lungs = ndimage.binary_opening(lungs)
    return float(lungs.sum()) * pixel_mm[0] * pixel_mm[1] * step * step


def choose(areas: np.ndarray, z_mm: np.ndarray, options: Options) -> tuple[list[int], tuple[int, int]]:
    """The slice indices to take (ascending) and the first/last index through the lungs.

    Raises VolumeError("volume_no_lungs") when no slice has MIN_LUNG_AREA_MM2 of lung.
    """
    best = float(areas.max()) if len(areas) else 0.0
    if best < MIN_LUNG_AREA_MM2:
        raise VolumeError("volume_no_lungs", f"largest lung area {best / 100:.0f} cm2 is under "
                          f"{MIN_LUNG_AREA_MM2 / 100:.0f} cm2 (not a chest CT, or not in HU)")
    through = np.nonzero(areas >= options.lung_fraction * best)[0]
    first, last = int(through[0]), int(through[-1])
    span = abs(float(z_mm[last] - z_mm[first]))
    count = max(1, min(options.slices, int(span // options.min_gap_mm) + 1 if options.min_gap_mm > 0
                       else options.slices))
    targets = (np.linspace(z_mm[first], z_mm[last], count) if count > 1
               else np.array([(z_mm[first] + z_mm[last]) / 2.0]))
    chosen: list[int] = []
    for target in targets:
        order = through[np.argsort(np.abs(z_mm[through] - target))]
        for k in order.tolist():
            if all(abs(z_mm[k] - z_mm[c]) >= options.min_gap_mm - 1e-6 for c in chosen):
                chosen.append(k)
                break
    return sorted(chosen), (first, last)


def select(count: int, z_mm: np.ndarray, read_slice: Callable[[int], np.ndarray],
           pixel_mm: tuple[float, float], options: Options,
           file_order: list[int] | None = None) -> tuple[list[Slice], tuple[int, int]]:
    """Pass 1 (every slice, in file order) -> lung areas -> choose -> pass 2 (chosen slices)."""
    areas = np.zeros(count, np.float64)
    for k in file_order if file_order is not None else range(count):
        areas[k] = lung_area_mm2(read_slice(k), pixel_mm)
    chosen, lung_range = choose(areas, z_mm, options)
    order = file_order if file_order is not None else list(range(count))
    rank = {k: i for i, k in enumerate(order)}
    slices = []
    for k in sorted(chosen, key=rank.__getitem__):
        hu = read_slice(k)
        slices.append(Slice(k, count, float(z_mm[k]), float(areas[k]),
                            window(hu, options.window_width, options.window_level), hu))
    return sorted(slices, key=lambda s: s.index), lung_range


def reason_of(e: Exception) -> str:
    """The audit reason of a reader's exception: a file cut short, or any other corruption."""
    text = str(e).lower()
    if isinstance(e, EOFError) or any(w in text for w in ("less than expected", "truncat", "end of",
                                                          "expected", "ended before")):
        return "volume_truncated"
    return "volume_corrupt"


def square_pixels(hu: np.ndarray, pixel_mm: tuple[float, float]) -> np.ndarray:
    """Resamples rows so that pixels are square (CT in-plane pixels nearly always are)."""
    row_mm, col_mm = pixel_mm
    if abs(row_mm - col_mm) <= 0.01 * col_mm:
        return hu
    height = max(1, int(round(hu.shape[0] * row_mm / col_mm)))
    return np.asarray(Image.fromarray(hu.astype(np.float32), "F").resize((hu.shape[1], height),
                                                                          Image.BILINEAR))


