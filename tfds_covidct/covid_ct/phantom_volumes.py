"""Synthetic CT volumes in Hounsfield units, and their DICOM and NIfTI files, for the volume
readers' tests and the bench (never patient data).

Arrays are (slices, rows, columns) in radiological display order: slice 0 the most inferior, rows
from anterior to posterior, columns from the patient's right to left. The files are written with
pydicom and nibabel, the libraries the readers use, from the same arrays, so a test compares what
a reader returns with the HU it was written from.
"""

from __future__ import annotations

import pathlib

import numpy as np
from scipy import ndimage

from tfds_covidct.covid_ct.sources.labels import LABELS

AIR_HU, LUNG_HU, SOFT_HU, VESSEL_HU, BONE_HU, GGO_HU = -1000.0, -860.0, 40.0, 30.0, 700.0, -380.0


def volume_hu(index: int, label: str, depth: int = 48, height: int = 160, width: int = 200,
              seed: int = 0) -> np.ndarray:
    """A chest CT-like volume (float32 HU): body, two lungs spanning ~15-90% of the depth (the
    right lung larger, as in anatomy), the heart anterior and to the patient's left (image right),
    the spine posterior, vessels that differ slice to slice, and for covid ground-glass blobs."""
    rng = np.random.default_rng([seed, index, LABELS.index(label), 7])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Every volume its own patient: body size and place, lung sizes and places, heart and spine.
    cy, cx = height * rng.uniform(0.46, 0.54), width * rng.uniform(0.46, 0.54)
    a, b = width * rng.uniform(0.36, 0.47), height * rng.uniform(0.32, 0.44)
    body = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
    z0, z1 = depth * rng.uniform(0.1, 0.2), depth * rng.uniform(0.85, 0.95)
    heart = (((xx - cx - a * rng.uniform(0.12, 0.3)) / (a * rng.uniform(0.22, 0.34))) ** 2
             + ((yy - cy + b * rng.uniform(0.0, 0.25)) / (b * rng.uniform(0.25, 0.4))) ** 2 <= 1)
    spine = (xx - cx) ** 2 + (yy - (cy + b * rng.uniform(0.68, 0.8))) ** 2 <= (b * rng.uniform(0.12, 0.2)) ** 2
    lung_shape = [(side, rng.uniform(0.38, 0.52), rng.uniform(-0.12, 0.05), rng.uniform(0.26, 0.38) * size,
                   rng.uniform(0.5, 0.7), rng.uniform(-0.08, 0.08))
                  for side, size in ((-1, 1.0), (1, 0.85))]  # image left = patient right: larger
    ggo = [(rng.uniform(0.2, 0.8) * depth, rng.uniform(-0.6, 0.6), rng.uniform(-0.3, 0.3),
            rng.uniform(0.06, 0.12) * width) for _ in range(int(rng.integers(3, 6)))]
    out = np.empty((depth, height, width), np.float32)
    for k in range(depth):
        srng = np.random.default_rng([seed, index, LABELS.index(label), 11, k])
        image = np.full((height, width), AIR_HU, np.float32)
        image[body] = SOFT_HU
        t = (k + 0.5 - z0) / (z1 - z0)
        scale = float(np.sqrt(max(0.0, 1 - (2 * t - 1) ** 2))) if 0 <= t <= 1 else 0.0
        lungs = np.zeros_like(body)
        if scale > 0.05:
            for side, off_x, off_y, half_w, half_h, drift in lung_shape:
                lx = cx + side * a * (off_x + drift * t)
                ly = cy + b * off_y
                lungs |= (((xx - lx) / (a * half_w * scale)) ** 2
                          + ((yy - ly) / (b * half_h * scale)) ** 2 <= 1)
            lungs &= body & ~heart
            image[lungs] = LUNG_HU
            ys, xs = np.nonzero(lungs)
            vessels = np.zeros_like(image)
            for i in srng.choice(len(ys), size=min(len(ys), 30), replace=False):
                vessels += (VESSEL_HU - LUNG_HU) * (((xx - xs[i]) ** 2 + (yy - ys[i]) ** 2)
                                                    <= srng.uniform(1.0, 2.5) ** 2)
            image += ndimage.gaussian_filter(np.minimum(vessels, VESSEL_HU - LUNG_HU), 0.7) * lungs
            if label == "covid":
                blobs = np.zeros_like(image)
                for gz, gx, gy, r in ggo:
                    rz = max(0.0, 1 - abs(k - gz) / (0.12 * depth))
                    if rz > 0:
                        blobs += rz * (((xx - cx - gx * a) ** 2 + (yy - cy - gy * b) ** 2) <= r * r)
                image += ndimage.gaussian_filter(blobs, width / 50) * (GGO_HU - LUNG_HU) * lungs
        image[heart & body] = SOFT_HU + 10
        image[spine] = BONE_HU
        image += srng.normal(0, 12, image.shape).astype(np.float32) * body
        out[k] = np.clip(image, AIR_HU - 24, 1500)
    return out


ORIENTATIONS = {"standard": [1, 0, 0, 0, 1, 0], "flipped": [-1, 0, 0, 0, -1, 0],
                "transposed": [0, 1, 0, 1, 0, 0]}


def _plane(stored: np.ndarray, k: int, orientation: str, spacing_mm: float, pixel_mm: float
           ) -> tuple[np.ndarray, list[float]]:
    """Slice k of `stored` as it is stored in `orientation`, and its ImagePositionPatient (mm)."""
    _, height, width = stored.shape
    image = {"standard": stored[k], "flipped": stored[k, ::-1, ::-1],
             "transposed": stored[k].T}[orientation]
    # Pixel (0, 0) of a displayed slice is the patient's right-anterior corner: LPS x, y < 0.
    x0, y0 = -(width / 2) * pixel_mm, -(height / 2) * pixel_mm
    corner = {"standard": (x0, y0), "flipped": (-x0, -y0), "transposed": (x0, y0)}[orientation]
    return image, [round(corner[0], 3), round(corner[1], 3), round(k * spacing_mm - 300.0, 3)]


def _dataset(sop_class: str, instance: str, patient_id: str, series_uid: str, modality: str,
             image: np.ndarray, transfer_syntax: str | None = None):
    """A pydicom Dataset with its file meta, identity and 16-bit MONOCHROME2 pixel module."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = UID(transfer_syntax) if transfer_syntax else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, instance
    ds.Modality, ds.PatientID, ds.PatientName = modality, patient_id, "PHANTOM^SYNTHETIC"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[patient_id, "study"])
    ds.SeriesInstanceUID = series_uid
    ds.Rows, ds.Columns = image.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if image.dtype == np.int16 else 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.ascontiguousarray(image).tobytes()
    return ds


def _stored(values: np.ndarray) -> np.ndarray:
    values = np.rint(values)
    return values.astype(np.int16 if values.min() < 0 else np.uint16)


def write_dicom_series(folder: str | pathlib.Path, hu: np.ndarray, spacing_mm: float = 5.0,
                       pixel_mm: float = 1.5, patient_id: str = "PHANTOM-0",
                       orientation: str = "standard", slope: float = 1.0, intercept: float = -1024.0,
                       modality: str = "CT", transfer_syntax: str | None = None,
                       extensionless: bool = False, series_uid: str | None = None) -> list[pathlib.Path]:
    """Writes `hu` (radiological display order, see volume_hu) as a DICOM CT series with pydicom.

    orientation: "standard" (ImageOrientationPatient 1,0,0,0,1,0: stored as displayed),
    "flipped" (-1,0,0,0,-1,0: stored rotated 180 degrees) or "transposed" (0,1,0,1,0,0: stored
    with rows and columns swapped). Stored values are (hu - intercept) / slope as 16-bit integers.
    Files are named in a shuffled order, as exports often are. Returns the paths.
    """
    from pydicom.uid import CTImageStorage, generate_uid

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    depth = hu.shape[0]
    series_uid = series_uid or generate_uid(entropy_srcs=[patient_id, orientation, str(hu.shape)])
    stored = _stored((hu - intercept) / slope)
    order = np.random.default_rng(depth).permutation(depth)
    paths = []
    for k in range(depth):
        image, position = _plane(stored, k, orientation, spacing_mm, pixel_mm)
        ds = _dataset(CTImageStorage, generate_uid(entropy_srcs=[series_uid, str(k)]), patient_id,
                      series_uid, modality, image, transfer_syntax)
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = ORIENTATIONS[orientation]
        ds.ImagePositionPatient = position
        ds.PixelSpacing = [pixel_mm, pixel_mm]
        ds.SliceThickness = spacing_mm
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
        name = f"IM{order[k]:04d}" + ("" if extensionless else ".dcm")
        ds.save_as(folder / name, enforce_file_format=True)
        paths.append(folder / name)
    return paths


def write_enhanced_ct(path: str | pathlib.Path, hu: np.ndarray, rescales: list[tuple[float, float]],
                      spacing_mm: float = 5.0, pixel_mm: float = 1.5, patient_id: str = "PHANTOM-E",
                      orientation: str = "standard") -> pathlib.Path:
    """Writes `hu` as one Enhanced CT Image file (multi-frame, PS3.3 A.38) with pydicom.

    The orientation and pixel spacing are shared functional groups; each frame has its own
    PlanePositionSequence and PixelValueTransformationSequence, the (slope, intercept) of
    `rescales` taken in turn, so stored values mean different HU in different frames (stored =
    (hu - intercept) / slope). Frames are stored in a shuffled order, not by position.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage, generate_uid

    depth = hu.shape[0]
    order = np.random.default_rng(depth + 1).permutation(depth)  # frame i holds slice order[i]
    frames, groups = [], []
    for i, k in enumerate(order):
        slope, intercept = rescales[i % len(rescales)]
        image, position = _plane(hu, int(k), orientation, spacing_mm, pixel_mm)
        frames.append((image - intercept) / slope)
        item = Dataset()
        item.PlanePositionSequence = Sequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = position
        item.PixelValueTransformationSequence = Sequence([Dataset()])
        transform = item.PixelValueTransformationSequence[0]
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slope, intercept, "HU"
        groups.append(item)
    stored = _stored(np.stack(frames))
    series_uid = generate_uid(entropy_srcs=[patient_id, "enhanced", str(hu.shape)])
    ds = _dataset(EnhancedCTImageStorage, generate_uid(entropy_srcs=[series_uid, "0"]), patient_id,
                  series_uid, "CT", stored)
    ds.NumberOfFrames = depth
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = ORIENTATIONS[orientation]
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = [pixel_mm, pixel_mm]
    shared.PixelMeasuresSequence[0].SliceThickness = spacing_mm
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(path: str | pathlib.Path, hu: np.ndarray, spacing_mm: float = 5.0,
                pixel_mm: float = 1.5, axcodes: str = "RAS", slope: float = 1.0,
                intercept: float = 0.0, floats: bool = False) -> pathlib.Path:
    """Writes `hu` (radiological display order) as a NIfTI file with nibabel, its voxel axes
    stored in `axcodes` order (e.g. "RAS", "LPS", "LAS", "SAR"), int16 with scl_slope/scl_inter, or
    float32 as given (`floats`: NaN voxels stay NaN)."""
    import nibabel as nib
    from nibabel.orientations import (
        apply_orientation,
        axcodes2ornt,
        inv_ornt_aff,
        ornt_transform,
    )

    # display[k, r, c]: k inferior->superior, r anterior->posterior, c right->left; RAS[x, y, z].
    ras = hu.transpose(2, 1, 0)[::-1, ::-1, :]
    ras_affine = np.diag([pixel_mm, pixel_mm, spacing_mm, 1.0])
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(axcodes)))
    data = apply_orientation(ras, transform)
    affine = ras_affine @ inv_ornt_aff(transform, ras.shape)
    if floats:  # float32 voxels as they are (NaN included), no scaling
        image = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    else:
        stored = np.rint((data - intercept) / slope).astype(np.int16)
        image = nib.Nifti1Image(stored, affine)
        image.header.set_slope_inter(slope, intercept)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path
