"""CT volumes (DICOM series, NIfTI files) -> a few axial slices through the lungs, lung-windowed.

The larger public COVID-19 CT collections are volumes, not figures: DICOM series (TCIA, hospital
exports) and NIfTI files (MosMedData, COVID-19-CT-Seg, Coronacases). This module turns one volume
into `Options.slices` axial 8-bit slices that then flow through the same cleaning, framing,
de-duplication and patient-level split as the images (see process.process_volume).

Readers: pydicom and nibabel, never our own parsers. DICOM's pixel modules (bit depth, signedness,
photometric interpretation, rescale/Modality LUT, dozens of transfer syntaxes) and NIfTI's header
(qform/sform, scl_slope, gzip, byte order) are where hand-written readers go wrong silently.

Orientation (radiological display, the way CT is read and the COVID-CT figures show it): looking
up from the feet, patient right on the image's left, anterior at the top.
  * DICOM: ImageOrientationPatient gives the patient (LPS) direction of the image's columns and rows;
    the slice is transposed/flipped so that columns run to the patient's left (+x) and rows to
    posterior (+y). Slices are ordered by ImagePositionPatient along the slice normal, inferior
    first; a series whose normal is not mostly cranio-caudal is `volume_not_axial`.
  * NIfTI: nibabel's `io_orientation(affine)` (what `as_closest_canonical` uses) names the voxel
    axis closest to each RAS+ axis and its sign; the axial slab is read along the S axis and turned
    so that columns run R->L and rows A->P. Reading slab by slab (not `as_closest_canonical`, which
    loads the whole array) keeps one slice in memory; `get_fdata`-style scaling (scl_slope/inter)
    is applied by nibabel's array proxy.

Streaming: pass 1 reads every slice once (in file order) and keeps only its lung area; pass 2
re-reads the chosen slices. Memory is one slice plus a float per slice, whatever the volume's size.

Slice selection: the lung area of a slice is the dark (< LUNG_HU) region enclosed by the body
(> BODY_HU, largest component, holes filled) on a working copy of at most WORK_SIDE pixels. Slices
whose lung area is at least `lung_fraction` of the volume's largest are "through the lungs"; the
chosen slices are spread evenly from the lowest to the highest of them, at least `min_gap_mm`
apart, so that neighbours are not near-copies (1-mm neighbours correlate 0.96-0.99; 10 mm apart
the vessels and airways differ).

Every problem with a volume is a `VolumeError(reason, detail)`; `process` turns it into an audit
row. Reasons: volume_corrupt, volume_truncated, volume_missing_slices, volume_mixed_orientations,
volume_not_axial, volume_not_ct, volume_compressed_needs_plugin, volume_too_few_slices,
volume_not_3d, volume_too_large, volume_no_lungs.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image
from scipy import ndimage

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIX = ".dcm"
DICOM_MAGIC_OFFSET = 128  # "DICM" after the 128-byte preamble of a DICOM file (PS3.10)
BODY_HU = -500.0  # denser than this is body (soft tissue -100..100, bone 300+; lung -950..-500)
LUNG_HU = -400.0  # lung parenchyma (even with ground glass, -700..-300) inside the body is below this
WORK_SIDE = 128  # lung areas are measured on a copy whose longer side is at most this
MIN_LUNG_AREA_MM2 = 1500.0  # largest lung area below this (about 4 x 4 cm): no lungs in the volume
MIN_SLICES = 8  # fewer slices than this is a localizer or a stray image, not a volume
GAP_TOLERANCE = 1.5  # a step between slices over this many times the median step: slices missing
MAX_STREAMLESS_VOXELS = 400_000_000  # a NIfTI whose axial slabs are not contiguous is read whole


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


def is_nifti(name: str) -> bool:
    return name.lower().endswith(NIFTI_SUFFIXES)


def is_dicom_file(path: pathlib.Path) -> bool:
    """A `.dcm` file, or a file without an extension whose bytes 128..131 are "DICM"."""
    if path.suffix.lower() == DICOM_SUFFIX:
        return True
    if path.suffix:
        return False
    try:
        with path.open("rb") as f:
            head = f.read(DICOM_MAGIC_OFFSET + 4)
    except OSError:
        return False
    return head[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == b"DICM"


def window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Hounsfield units -> uint8: level - width/2 is 0, level + width/2 is 255, linear, clipped."""
    low = level - width / 2.0
    scaled = (np.asarray(hu, np.float32) - low) * (255.0 / width)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def lung_area_mm2(hu: np.ndarray, pixel_mm: tuple[float, float]) -> float:
    """The area (mm^2) of the dark regions enclosed by the body in one axial slice (HU)."""
    step = max(1, int(np.ceil(max(hu.shape) / WORK_SIDE)))
    small = hu[::step, ::step]
    body = small > BODY_HU
    labels, count = ndimage.label(body)
    if count == 0:
        return 0.0
    sizes = ndimage.sum_labels(body, labels, index=np.arange(1, count + 1))
    body = labels == (int(np.argmax(sizes)) + 1)
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


def read(path: str | pathlib.Path, members: tuple[str, ...] = (), options: Options = Options()
         ) -> list[Volume | VolumeError]:
    """The volumes at `path`: a NIfTI file, or a folder whose DICOM `members` (file names) may hold
    several series. One entry per volume (a DICOM folder may give several), a VolumeError for each
    that cannot be used. Never raises for a bad volume."""
    try:
        if members:
            return [_guard(lambda s=s: s()) for s in dicom_series(pathlib.Path(path), members, options)]
        return [_guard(lambda: read_nifti(pathlib.Path(path), options))]
    except VolumeError as e:
        return [e]
    except Exception as e:  # noqa: BLE001 - a reader's surprise is a skip with its reason, never a crash
        return [VolumeError("volume_corrupt", f"{type(e).__name__}: {e}")]


def _guard(make: Callable[[], Volume]) -> Volume | VolumeError:
    try:
        return make()
    except VolumeError as e:
        return e
    except MemoryError:
        return VolumeError("volume_too_large", "out of memory reading it")
    except Exception as e:  # noqa: BLE001 - see read()
        return VolumeError(_reason_of(e), f"{type(e).__name__}: {e}")


def _reason_of(e: Exception) -> str:
    text = str(e).lower()
    if isinstance(e, EOFError) or any(w in text for w in ("less than expected", "truncat", "end of",
                                                          "expected", "ended before")):
        return "volume_truncated"
    return "volume_corrupt"


def _select(count: int, z_mm: np.ndarray, read_slice: Callable[[int], np.ndarray],
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


def _square_pixels(hu: np.ndarray, pixel_mm: tuple[float, float]) -> np.ndarray:
    """Resamples rows so that pixels are square (CT in-plane pixels nearly always are)."""
    row_mm, col_mm = pixel_mm
    if abs(row_mm - col_mm) <= 0.01 * col_mm:
        return hu
    height = max(1, int(round(hu.shape[0] * row_mm / col_mm)))
    return np.asarray(Image.fromarray(hu.astype(np.float32), "F").resize((hu.shape[1], height),
                                                                          Image.BILINEAR))


# ---------------------------------------------------------------- DICOM ----------------------

def dicom_series(folder: pathlib.Path, members: tuple[str, ...], options: Options
                 ) -> list[Callable[[], Volume]]:
    """Groups the DICOM files of a folder by SeriesInstanceUID (headers only); one reader per
    series, plus one that raises for files whose header cannot be read."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, list[tuple[str, object]]] = {}
    bad: list[str] = []
    for name in members:
        try:
            ds = pydicom.dcmread(str(folder / name), stop_before_pixels=True,
                                 force=pathlib.Path(name).suffix.lower() == DICOM_SUFFIX)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as e:
            bad.append(f"{name} ({type(e).__name__})")
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        if not uid:
            bad.append(f"{name} (no SeriesInstanceUID)")
            continue
        series.setdefault(uid, []).append((name, ds))
    readers: list[Callable[[], Volume]] = [
        (lambda files=files: _read_dicom_series(folder, files, options)) for _, files in sorted(series.items())]
    if bad:
        def unreadable() -> Volume:
            raise VolumeError("volume_corrupt", f"{len(bad)} file(s) without a readable DICOM "
                              f"header: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
        readers.append(unreadable)
    return readers


def _read_dicom_series(folder: pathlib.Path, files: list[tuple[str, object]], options: Options) -> Volume:
    import pydicom
    from pydicom.pixels import apply_rescale, get_decoder

    first = files[0][1]
    modality = str(getattr(first, "Modality", "") or "")
    if modality.upper() != "CT":
        raise VolumeError("volume_not_ct", f"Modality {modality or 'missing'!r} (series of "
                          f"{len(files)} files); only CT is used")
    syntax = first.file_meta.get("TransferSyntaxUID") if hasattr(first, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        decoder = get_decoder(syntax)
        if not decoder.is_available:
            needs = "; ".join(getattr(decoder, "missing_dependencies", []) or ["a decoder plugin"])
            raise VolumeError("volume_compressed_needs_plugin", f"{syntax.name} needs an optional "
                              f"package pydicom can use: {needs}")
    if len(files) < MIN_SLICES:
        raise VolumeError("volume_too_few_slices", f"{len(files)} slice(s) (at least {MIN_SLICES}: "
                          "a localizer or stray images)")
    orientations, positions, shapes = [], [], set()
    for name, ds in files:
        try:
            iop = np.array([float(v) for v in ds.ImageOrientationPatient], np.float64)
            ipp = np.array([float(v) for v in ds.ImagePositionPatient], np.float64)
            shapes.add((int(ds.Rows), int(ds.Columns)))
            spacing = tuple(float(v) for v in ds.PixelSpacing)
        except (AttributeError, ValueError, TypeError, KeyError) as e:
            raise VolumeError("volume_corrupt", f"{name}: header without orientation, position, "
                              f"size or pixel spacing ({type(e).__name__}: {e})") from None
        orientations.append(iop)
        positions.append(ipp)
    iops = np.stack(orientations)
    if np.abs(iops - iops[0]).max() > 1e-3:
        kinds = {tuple(np.round(o, 2)) for o in iops}
        raise VolumeError("volume_mixed_orientations", f"{len(kinds)} ImageOrientationPatient "
                          f"values in one series: {sorted(kinds)[:3]}")
    if len(shapes) > 1:
        raise VolumeError("volume_corrupt", f"slices of different sizes in one series: {sorted(shapes)}")
    rowcos, colcos = iops[0][:3], iops[0][3:]
    normal = np.cross(rowcos, colcos)
    if abs(normal[2]) < 0.8:
        raise VolumeError("volume_not_axial", f"slice normal {np.round(normal, 2).tolist()} (LPS) is "
                          "not cranio-caudal: a coronal or sagittal series")
    z = np.stack(positions) @ normal * np.sign(normal[2])  # mm along the body axis, superior +
    order = np.argsort(z, kind="stable")
    z_sorted = z[order]
    steps = np.diff(z_sorted)
    if (steps < 1e-3).any():
        raise VolumeError("volume_corrupt", f"{int((steps < 1e-3).sum())} slice position(s) repeated "
                          "(two acquisitions in one series)")
    median = float(np.median(steps))
    if steps.max() > GAP_TOLERANCE * median:
        at = int(np.argmax(steps))
        raise VolumeError("volume_missing_slices", f"a {steps.max():.1f} mm step between slices at "
                          f"z={z_sorted[at]:.1f}..{z_sorted[at + 1]:.1f} mm where the series steps "
                          f"{median:.2f} mm: about {int(round(steps.max() / median)) - 1} slice(s) missing")
    names = [files[i][0] for i in order]
    pixel_mm = (spacing[0], spacing[1])  # (between rows, between columns)
    turned_mm = _turned_spacing(rowcos, pixel_mm)

    def read_slice(k: int) -> np.ndarray:
        ds = pydicom.dcmread(str(folder / names[k]))
        hu = apply_rescale(ds.pixel_array, ds).astype(np.float32)
        if hu.ndim != 2:
            raise VolumeError("volume_corrupt", f"{names[k]}: pixel array of shape {hu.shape}")
        return _square_pixels(to_radiological(hu, rowcos, colcos), turned_mm)

    notes = []
    if not hasattr(first, "RescaleSlope") and not hasattr(first, "ModalityLUTSequence"):
        notes.append("dicom_no_rescale:values_taken_as_HU")
    square_mm = (turned_mm[1], turned_mm[1])  # read_slice resamples rows to the column spacing
    slices, lung_range = _select(len(names), z_sorted, read_slice, square_mm, options)
    rows, cols = slices[0].hu.shape
    return Volume("DICOM", (len(names), rows, cols), (median, *turned_mm),
                  str(getattr(first, "PatientID", "") or ""), str(first.SeriesInstanceUID),
                  tuple(slices), lung_range, tuple(notes))


def _turned_spacing(rowcos: np.ndarray, pixel_mm: tuple[float, float]) -> tuple[float, float]:
    """(row, column) spacing after to_radiological: swapped when the image is transposed."""
    return pixel_mm if abs(rowcos[0]) >= abs(rowcos[1]) else (pixel_mm[1], pixel_mm[0])


def to_radiological(pixels: np.ndarray, rowcos: np.ndarray, colcos: np.ndarray) -> np.ndarray:
    """A DICOM axial image (rows along `colcos`, columns along `rowcos`, LPS) -> radiological display:
    columns run to the patient's left (+x), rows to posterior (+y)."""
    directions = (np.asarray(colcos), np.asarray(rowcos))  # direction of array axis 0, axis 1
    x_axis = 0 if abs(directions[0][0]) > abs(directions[1][0]) else 1
    y_axis = 1 - x_axis
    out = pixels.transpose(y_axis, x_axis)
    if directions[y_axis][1] < 0:
        out = out[::-1, :]
    if directions[x_axis][0] < 0:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------- NIfTI ----------------------

def read_nifti(path: pathlib.Path, options: Options) -> Volume:
    import nibabel as nib
    from nibabel.orientations import io_orientation

    try:
        image = nib.load(str(path), keep_file_open=True if path.name.lower().endswith(".gz") else None)
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for a bad header
        raise VolumeError(_reason_of(e), f"{type(e).__name__}: {e}") from None
    shape = tuple(int(v) for v in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise VolumeError("volume_not_3d", f"shape {shape} (a 3-D CT volume is needed)")
    _check_complete(path, image, shape)
    affine = image.affine
    ornt = io_orientation(affine)  # per voxel axis: (RAS axis, +1/-1)
    axis_of = {int(ras): i for i, (ras, _) in enumerate(ornt)}
    flip_of = {int(ras): float(sign) for ras, sign in ornt}
    s_axis, x_axis, y_axis = axis_of[2], axis_of[0], axis_of[1]
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))  # mm per voxel along each voxel axis
    count = shape[s_axis]
    if count < MIN_SLICES:
        raise VolumeError("volume_too_few_slices", f"{count} axial slice(s) (at least {MIN_SLICES})")
    proxy = image.dataobj
    whole = None
    notes = []
    if s_axis != 2:  # axial slabs are strided through the file: read it once, whole
        voxels = int(np.prod(shape))
        if voxels > MAX_STREAMLESS_VOXELS:
            raise VolumeError("volume_too_large", f"{shape} voxels stored with the axial axis first "
                              f"cannot be streamed and is over {MAX_STREAMLESS_VOXELS} voxels")
        whole = np.asarray(proxy[(slice(None),) * 3 + (0,) * (len(image.shape) - 3)], np.float32)
        notes.append("nifti_axial_axis_not_last:read_whole")

    def voxel_index(k: int) -> int:
        return k if flip_of[2] > 0 else count - 1 - k

    def read_slice(k: int) -> np.ndarray:
        index: list = [slice(None)] * 3
        index[s_axis] = voxel_index(k)
        extra = (0,) * (len(image.shape) - 3)
        slab = (whole[tuple(index)] if whole is not None
                else np.asarray(proxy[tuple(index) + extra], np.float32))
        rest = [a for a in range(3) if a != s_axis]  # slab axes, in voxel order
        slab = slab.transpose(rest.index(x_axis), rest.index(y_axis))  # -> (x, y)
        if flip_of[0] < 0:
            slab = slab[::-1, :]
        if flip_of[1] < 0:
            slab = slab[:, ::-1]
        # RAS+: +x points to the patient's right, +y anterior. Radiological display: columns from
        # the patient's right to left (x decreasing), rows from anterior down (y decreasing).
        image2d = slab[::-1, ::-1].T
        return _square_pixels(np.ascontiguousarray(image2d, np.float32),
                              (float(zooms[y_axis]), float(zooms[x_axis])))

    z_mm = np.arange(count, dtype=np.float64) * float(zooms[s_axis])
    file_order = sorted(range(count), key=voxel_index)  # read in file order: gzip streams forward
    pixel_mm = (float(zooms[x_axis]), float(zooms[x_axis]))  # square after _square_pixels
    checked: list[bool] = []

    def read_checked(k: int) -> np.ndarray:
        hu = read_slice(k)
        if not checked:  # the first slice read (in file order: gzip is not re-read from the start)
            _check_hu(hu)
            checked.append(True)
        return hu

    slices, lung_range = _select(count, z_mm, read_checked, pixel_mm, options, file_order)
    codes = "".join(nib.aff2axcodes(affine))
    notes.insert(0, f"nifti_axes:{codes}")
    return Volume("NIfTI", (count, int(shape[y_axis]), int(shape[x_axis])),
                  (float(zooms[s_axis]), float(zooms[y_axis]), float(zooms[x_axis])), "", "",
                  tuple(slices), lung_range, tuple(notes))


def _check_complete(path: pathlib.Path, image, shape: tuple[int, ...]) -> None:
    """An uncompressed .nii shorter than its header's offset + data size is truncated."""
    if path.name.lower().endswith(".gz"):
        return
    header = image.header
    expected = int(header.get_data_offset()) + int(np.prod(image.shape)) * header.get_data_dtype().itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise VolumeError("volume_truncated", f"{actual} bytes where the header needs {expected}")


def _check_hu(hu: np.ndarray) -> None:
    """A CT in Hounsfield units has air near -1000 around the body; NIfTI carries no modality."""
    low = float(np.percentile(hu, 1))
    if low > -500:
        raise VolumeError("volume_not_ct", f"a slice's 1st percentile is {low:.0f}, no air "
                          "near -1000: not a CT in Hounsfield units (an MR, a mask, or unscaled data)")


def iter_slices(volumes: list[Volume | VolumeError]) -> Iterator[tuple[Volume, Slice]]:
    for v in volumes:
        if isinstance(v, Volume):
            for s in v.slices:
                yield v, s
