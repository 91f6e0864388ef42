"""CT volumes (DICOM series, Enhanced CT files, NIfTI files) -> a few axial slices through the lungs,
lung-windowed.

The larger public COVID-19 CT collections are volumes, not figures: DICOM series (TCIA, hospital
exports) and NIfTI files (MosMedData, COVID-19-CT-Seg, Coronacases). This package turns one volume
into `Options.slices` axial 8-bit slices that then flow through the same cleaning, framing,
de-duplication and patient-level split as the images (see process.process_volume).

    selection.py  what every reader shares: Options, Volume, Slice, VolumeError, the lung area of a
                  slice, which slices are taken (two streaming passes), the lung window
    dicom.py      DICOM: classic series and multi-frame Enhanced CT (per-frame functional groups)
    nifti.py      NIfTI: any stored orientation; NaN voxels outside the body as air

Readers: pydicom and nibabel, never our own parsers. DICOM's pixel modules (bit depth, signedness,
photometric interpretation, rescale/Modality LUT, dozens of transfer syntaxes) and NIfTI's header
(qform/sform, scl_slope, gzip, byte order) are where hand-written readers go wrong silently.

Orientation (radiological display, the way CT is read and the COVID-CT figures show it): looking
up from the feet, patient right on the image's left, anterior at the top.

Every problem with a volume is a `VolumeError(reason, detail)`; `process` turns it into an audit
row. Reasons: volume_corrupt, volume_truncated, volume_missing_slices, volume_mixed_orientations,
volume_not_axial, volume_not_ct, volume_compressed_needs_plugin, volume_too_few_slices,
volume_not_3d, volume_too_large, volume_no_lungs, volume_nan_in_body.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from tfds_covidct.covid_ct.volumes.dicom import (
    dicom_series,
    is_dicom_file,
    to_radiological,
)
from tfds_covidct.covid_ct.volumes.nifti import is_nifti, read_nifti
from tfds_covidct.covid_ct.volumes.selection import (
    Options,
    Slice,
    Volume,
    VolumeError,
    choose,
    lung_area_mm2,
    reason_of,
    window,
)

__all__ = ["Options", "Slice", "Volume", "VolumeError", "choose", "dicom_series", "is_dicom_file",
           "is_nifti", "lung_area_mm2", "read", "read_nifti", "to_radiological",
           "window"]


def read(path: str | pathlib.Path, members: tuple[str, ...] = (), options: Options = Options()
         ) -> list[Volume | VolumeError]:
    """The volumes at `path`: a NIfTI file, or a folder whose DICOM `members` (file names) may hold
    several series and multi-frame files. One entry per volume (a DICOM folder may give several),
    a VolumeError for each that cannot be used. Never raises for a bad volume."""
    try:
        if members:
            return [_guard(s) for s in dicom_series(pathlib.Path(path), members, options)]
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
        return VolumeError(reason_of(e), f"{type(e).__name__}: {e}")

