"""DICOM CT -> a Volume: a classic series (one file per slice) or an Enhanced CT image (one
multi-frame file holding the whole series, as modern scanners export), read with pydicom.

Both are read as a list of frames, each with its own orientation, position, pixel spacing and
rescale, so one assembly serves both (and a series mixing them):
  * a single-frame file: the values at its top level (ImageOrientationPatient,
    ImagePositionPatient, PixelSpacing, RescaleSlope/RescaleIntercept or a Modality LUT);
  * a multi-frame file (PS3.3 C.7.6.16, Multi-frame Functional Groups): each frame's item of
    PerFrameFunctionalGroupsSequence, else the SharedFunctionalGroupsSequence, else the top level
    (legacy converted files), for PlaneOrientationSequence > ImageOrientationPatient,
    PlanePositionSequence > ImagePositionPatient, PixelMeasuresSequence > PixelSpacing and
    PixelValueTransformationSequence > RescaleSlope/RescaleIntercept. The rescale differs frame to
    frame in some exports, so it is applied per frame (pydicom's `apply_modality_lut` on the
    frame's own functional group); a frame's pixels are read alone (`pydicom.pixels.pixel_array`
    with `index`), never the whole file.

Orientation: ImageOrientationPatient gives the patient (LPS) direction of the image's columns and
rows; the slice is transposed/flipped so that columns run to the patient's left (+x) and rows to
posterior (+y). Frames are ordered by ImagePositionPatient along the slice normal, inferior first;
a series whose normal is not mostly cranio-caudal is `volume_not_axial`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import numpy as np

from tfds_covidct.covid_ct.volumes.selection import (
    GAP_TOLERANCE,
    MIN_SLICES,
    Options,
    Volume,
    VolumeError,
    select,
    square_pixels,
)

DICOM_SUFFIX = ".dcm"
DICOM_MAGIC_OFFSET = 128  # "DICM" after the 128-byte preamble of a DICOM file (PS3.10)
HEADER_ERRORS = (AttributeError, ValueError, TypeError, KeyError, IndexError)


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


@dataclasses.dataclass(frozen=True)
class Frame:
    """One slice of a series: which file (and which frame of it), and its geometry and rescale.

    `index` is the frame's 0-based number in a multi-frame file, None for a single-frame file.
    `orientation` (6,) and `position` (3,) are in mm, patient LPS; `spacing` is (between rows,
    between columns) in mm; `rescale` is the pydicom Dataset holding this frame's rescale.
    """

    name: str
    index: int | None
    orientation: np.ndarray
    position: np.ndarray
    shape: tuple[int, int]
    spacing: tuple[float, float]
    rescale: object


def _floats(values, count: int) -> np.ndarray:
    out = np.array([float(v) for v in values], np.float64)
    if out.shape != (count,):
        raise ValueError(f"{count} numbers expected, got {len(out)}")
    return out


def _group(ds, shared, item, sequence: str):
    """The functional group `sequence` of one frame: its own item, else the shared one, else the
    dataset's top level (where single-frame and legacy files keep the same attributes)."""
    for holder in (item, shared):
        if holder is not None and holder.get(sequence):
            return holder[sequence].value[0]
    return ds


def frames_of(name: str, ds) -> list[Frame]:
    """The frames of one file's header (read without pixels). VolumeError("volume_corrupt") when
    a frame's orientation, position, size or pixel spacing is missing or malformed."""
    try:
        shape = (int(ds.Rows), int(ds.Columns))
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if not per_frame:
            return [Frame(name, None, _floats(ds.ImageOrientationPatient, 6),
                          _floats(ds.ImagePositionPatient, 3), shape,
                          tuple(_floats(ds.PixelSpacing, 2)), ds)]
        declared = int(ds.get("NumberOfFrames", len(per_frame)) or 0)
        if declared != len(per_frame):
            raise ValueError(f"NumberOfFrames {declared} but {len(per_frame)} per-frame groups")
        shared_groups = ds.get("SharedFunctionalGroupsSequence")
        shared = shared_groups[0] if shared_groups else None
        frames = []
        for i, item in enumerate(per_frame):
            def group(sequence: str, item=item):
                return _group(ds, shared, item, sequence)
            frames.append(Frame(
                name, i, _floats(group("PlaneOrientationSequence").ImageOrientationPatient, 6),
                _floats(group("PlanePositionSequence").ImagePositionPatient, 3), shape,
                tuple(_floats(group("PixelMeasuresSequence").PixelSpacing, 2)),
                group("PixelValueTransformationSequence")))
        return frames
    except HEADER_ERRORS as e:
        raise VolumeError("volume_corrupt", f"{name}: header without orientation, position, size "
                          f"or pixel spacing ({type(e).__name__}: {e})") from None


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
        (lambda files=files: read_series(folder, files, options)) for _, files in sorted(series.items())]
    if bad:
        def unreadable() -> Volume:
            raise VolumeError("volume_corrupt", f"{len(bad)} file(s) without a readable DICOM "
                              f"header: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
        readers.append(unreadable)
    return readers


def _check_readable(first, count: int) -> None:
    """CT only, and pixel data pydicom can decode here."""
    from pydicom.pixels import get_decoder

    modality = str(getattr(first, "Modality", "") or "")
    if modality.upper() != "CT":
        raise VolumeError("volume_not_ct", f"Modality {modality or 'missing'!r} (series of "
                          f"{count} files); only CT is used")
    syntax = first.file_meta.get("TransferSyntaxUID") if hasattr(first, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        decoder = get_decoder(syntax)
        if not decoder.is_available:
            needs = "; ".join(getattr(decoder, "missing_dependencies", []) or ["a decoder plugin"])
            raise VolumeError("volume_compressed_needs_plugin", f"{syntax.name} needs an optional "
                              f"package pydicom can use: {needs}")


def _axial_order(frames: list[Frame]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(rowcos, colcos, order of the frames inferior first, z of each in that order, median step).
    Raises VolumeError for mixed orientations or sizes, a non-axial series, repeated positions or
    missing slices."""
    iops = np.stack([f.orientation for f in frames])
    if np.abs(iops - iops[0]).max() > 1e-3:
        kinds = {tuple(np.round(o, 2)) for o in iops}
        raise VolumeError("volume_mixed_orientations", f"{len(kinds)} ImageOrientationPatient "
                          f"values in one series: {sorted(kinds)[:3]}")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VolumeError("volume_corrupt", f"slices of different sizes in one series: {sorted(shapes)}")
    rowcos, colcos = iops[0][:3], iops[0][3:]
    normal = np.cross(rowcos, colcos)
    if abs(normal[2]) < 0.8:
        raise VolumeError("volume_not_axial", f"slice normal {np.round(normal, 2).tolist()} (LPS) is "
                          "not cranio-caudal: a coronal or sagittal series")
    z = np.stack([f.position for f in frames]) @ normal * np.sign(normal[2])  # mm, superior +
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
    return rowcos, colcos, order, z_sorted, median


def read_series(folder: pathlib.Path, files: list[tuple[str, object]], options: Options) -> Volume:
    """One series (its files' headers, read without pixels) -> a Volume of the chosen slices."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, pixel_array

    first = files[0][1]
    _check_readable(first, len(files))
    frames = [frame for name, ds in files for frame in frames_of(name, ds)]
    if len(frames) < MIN_SLICES:
        raise VolumeError("volume_too_few_slices", f"{len(frames)} slice(s) in {len(files)} file(s) "
                          f"(at least {MIN_SLICES}: a localizer or stray images)")
    rowcos, colcos, order, z_sorted, median = _axial_order(frames)
    ordered = [frames[i] for i in order]
    turned_mm = _turned_spacing(rowcos, ordered[0].spacing)

    def read_slice(k: int) -> np.ndarray:
        frame = ordered[k]
        path = str(folder / frame.name)
        if frame.index is None:
            ds = pydicom.dcmread(path)
            stored, rescale = ds.pixel_array, ds
        else:
            stored, rescale = pixel_array(path, index=frame.index), frame.rescale
        hu = apply_modality_lut(stored, rescale).astype(np.float32)
        if hu.ndim != 2:
            raise VolumeError("volume_corrupt", f"{frame.name}: pixel array of shape {hu.shape}")
        return square_pixels(to_radiological(hu, rowcos, colcos), turned_mm)

    notes = []
    if not any(hasattr(frames[0].rescale, k) for k in ("RescaleSlope", "ModalityLUTSequence")):
        notes.append("dicom_no_rescale:values_taken_as_HU")
    multi = sum(1 for f in frames if f.index is not None)
    if multi:
        notes.append(f"dicom_multiframe:{multi}_frames_per_frame_functional_groups")
    square_mm = (turned_mm[1], turned_mm[1])  # read_slice resamples rows to the column spacing
    slices, lung_range = select(len(ordered), z_sorted, read_slice, square_mm, options)
    rows, cols = slices[0].hu.shape
    return Volume("DICOM", (len(ordered), rows, cols), (median, *turned_mm),
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
