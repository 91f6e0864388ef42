"""Deterministic synthetic CT-like phantoms: the embedded default (`covidct prepare --demo`).

Each phantom is an axial "slice": a body ellipse, two dark lungs with vessels, a spine, and for the
covid class ground-glass opacities (soft bright blobs in the lung periphery). Like the real
figures, some come with what the cleaning must remove: burned-in text, a white frame, a second
panel, a chest x-ray beside the slice, coloured marks. They are written as PNG files (with a
`SYNTHETIC_PHANTOMS.json` marker) and flow through the very same pipeline as real scans; their
`source` feature is "synthetic_phantom" and they are never mixed with real data.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from tfds_covidct.covid_ct.sources import LABELS, SYNTHETIC_MARKER, SYNTHETIC_SOURCE

LAYOUTS = ("plain", "text", "border", "panel", "xray", "colour")
DEFAULT_PER_CLASS = 48


@dataclasses.dataclass(frozen=True)
class Figure:
    """A phantom figure: `rgb` (H, W, 3) uint8, where the body is, and where the distractors are."""

    rgb: np.ndarray
    body_box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the body ellipse
    distractor_boxes: tuple[tuple[int, int, int, int], ...]  # text, x-ray, second panel, frame


def slice_image(rng: np.random.Generator, height: int, width: int, covid: bool) -> np.ndarray:
    """One CT-like axial slice (float32, 0..255) filling a height x width canvas."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = height / 2, width / 2
    a, b = width * 0.47, height * 0.45  # body semi-axes
    image = np.zeros((height, width), np.float32)
    body = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
    image[body] = 185 + rng.normal(0, 4)
    lungs = np.zeros_like(body)
    for side in (-1, 1):  # each lung its own size and place: every phantom is a distinct scan
        lx = cx + side * a * rng.uniform(0.38, 0.52)
        ly = cy + b * rng.uniform(-0.15, 0.05)
        la, lb = a * rng.uniform(0.24, 0.38), b * rng.uniform(0.45, 0.72)
        lungs |= ((xx - lx) / la) ** 2 + ((yy - ly) / lb) ** 2 <= 1
    heart = (((xx - cx - a * rng.uniform(-0.1, 0.15)) / (a * rng.uniform(0.15, 0.3))) ** 2
             + ((yy - cy - b * rng.uniform(0.0, 0.3)) / (b * rng.uniform(0.2, 0.35))) ** 2 <= 1)
    lungs &= body & ~heart
    image[lungs] = 28
    vessels = np.zeros_like(image)
    ys, xs = np.nonzero(lungs)
    for i in rng.choice(len(ys), size=40, replace=False):
        r = rng.uniform(0.6, 2.2) * width / 256
        vessels += 130 * (((xx - xs[i]) ** 2 + (yy - ys[i]) ** 2) <= r * r)
    image += ndimage.gaussian_filter(vessels, 0.8) * lungs
    spine = ((xx - cx) ** 2 + (yy - (cy + b * 0.72)) ** 2) <= (b * 0.14) ** 2
    image[spine] = 245
    if covid:
        opacity = np.zeros_like(image)
        # Wide, bright ground-glass: a class difference a small conditional GAN learns in a short
        # demo run (tests/test_conditional.py), and a person sees at 28x28.
        for _ in range(int(rng.integers(3, 7))):
            i = rng.integers(len(ys))
            r = rng.uniform(0.08, 0.16) * width
            opacity += 110 * (((xx - xs[i]) ** 2 + (yy - ys[i]) ** 2) <= r * r)
        image += ndimage.gaussian_filter(opacity, width / 40) * lungs
    image += rng.normal(0, 5, image.shape).astype(np.float32) * body
    return np.clip(ndimage.gaussian_filter(image, 0.7), 0, 255)


def xray_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A chest-radiograph-like panel (the scout view some figures put beside the CT)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.full((height, width), 150.0, np.float32) + 40 * (yy / height)
    for side in (-1, 1):
        lx, ly = width / 2 + side * width * 0.22, height * 0.45
        lung = ((xx - lx) / (width * 0.17)) ** 2 + ((yy - ly) / (height * 0.33)) ** 2 <= 1
        image[lung] = 80
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255)


def figure(index: int, label: str, layout: str, seed: int = 0) -> Figure:
    """The phantom figure number `index` of `label` with the given layout (deterministic)."""
    rng = np.random.default_rng([seed, index, LABELS.index(label), LAYOUTS.index(layout)])
    bh, bw = int(rng.integers(200, 260)), int(rng.integers(280, 340))
    body = slice_image(rng, bh, bw, covid=label == "covid")
    pad = 30
    height, width = bh + 2 * pad, bw + 2 * pad
    extra_w = {"panel": int(bw * 0.6) + 24, "xray": int(bw * 0.5) + 24}.get(layout, 0)
    canvas = np.zeros((height, width + extra_w), np.float32)
    canvas[pad:pad + bh, pad:pad + bw] = body
    # The ellipse of slice_image spans 3..97 % of the width and 5..95 % of the height.
    body_box = (pad + int(0.03 * bw), pad + int(0.05 * bh), pad + int(np.ceil(0.97 * bw)),
                pad + int(np.ceil(0.95 * bh)))
    distractors = []
    if layout == "panel":
        ph, pw = int(bh * 0.6), int(bw * 0.6)
        second = slice_image(rng, ph, pw, covid=label == "covid")
        x0, y0 = width + 4, pad + (bh - ph) // 2
        canvas[y0:y0 + ph, x0:x0 + pw] = second
        distractors.append((x0, y0, x0 + pw, y0 + ph))
    if layout == "xray":
        xh, xw = int(bh * 0.7), int(bw * 0.5)
        x0, y0 = width + 4, pad + bh - xh
        canvas[y0:y0 + xh, x0:x0 + xw] = xray_image(rng, xh, xw)
        distractors.append((x0, y0, x0 + xw, y0 + xh))
    rgb = np.repeat(np.rint(canvas).astype(np.uint8)[..., None], 3, axis=2)
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    if layout == "text":
        draw.text((4, 2), f"PHANTOM {index}  W:1500 L:-600", fill=(255, 255, 255))
        draw.text((width - 60, height - 14), "SYNTH", fill=(255, 255, 255))
        distractors += [(4, 2, 200, 14), (width - 60, height - 14, width - 20, height - 2)]
    if layout == "colour":
        cx, cy = pad + bw // 4, pad + bh // 2
        draw.ellipse((cx - 25, cy - 25, cx + 25, cy + 25), outline=(255, 0, 0), width=3)
        draw.line((pad + bw - 60, pad + 20, pad + bw - 20, pad + 60), fill=(255, 220, 0), width=3)
    if layout == "border":
        frame = 14
        framed = Image.new("RGB", (image.width + 2 * frame, image.height + 2 * frame), (255, 255, 255))
        framed.paste(image, (frame, frame))
        image = framed
        body_box = tuple(v + frame for v in body_box)
        distractors.append((0, 0, image.width, image.height))
    return Figure(np.asarray(image), body_box, tuple(distractors))


def write_phantoms(folder: str | pathlib.Path, per_class: int = DEFAULT_PER_CLASS, seed: int = 0) -> int:
    """Writes `per_class` phantoms of each label as PNGs under folder/{covid,non_covid}/, plus
    the SYNTHETIC_PHANTOMS.json marker that makes the folder a synthetic source. Returns the
    number of images written. Same arguments, same bytes."""
    folder = pathlib.Path(folder)
    count = 0
    for label in LABELS:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            layout = LAYOUTS[index % len(LAYOUTS)]
            fig = figure(index, label, layout, seed)
            Image.fromarray(fig.rgb).save(folder / label / f"phantom_{label}_{index:03d}_{layout}.png")
            count += 1
    marker = {"source": SYNTHETIC_SOURCE, "per_class": per_class, "seed": seed,
              "note": "synthetic CT-like phantoms, not patient data"}
    (folder / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return count


# ---------------------------------------------------------------- volumes --------------------
# Synthetic CT volumes in Hounsfield units, for the volume readers' tests and bench (never patient
# data). Arrays are (slices, rows, columns) in radiological display order: slice 0 the most
# inferior, rows from anterior to posterior, columns from the patient's right to left.
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
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, UID, generate_uid

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    iop = {"standard": [1, 0, 0, 0, 1, 0], "flipped": [-1, 0, 0, 0, -1, 0],
           "transposed": [0, 1, 0, 1, 0, 0]}[orientation]
    depth, height, width = hu.shape
    series_uid = series_uid or generate_uid(entropy_srcs=[patient_id, orientation, str(hu.shape)])
    study_uid = generate_uid(entropy_srcs=[patient_id, "study"])
    stored = np.rint((hu - intercept) / slope)
    signed = stored.min() < 0
    stored = stored.astype(np.int16 if signed else np.uint16)
    order = np.random.default_rng(depth).permutation(depth)
    paths = []
    for k in range(depth):
        image = {"standard": stored[k], "flipped": stored[k, ::-1, ::-1],
                 "transposed": stored[k].T}[orientation]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(k)])
        meta.TransferSyntaxUID = UID(transfer_syntax) if transfer_syntax else ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = modality, patient_id, "PHANTOM^SYNTHETIC"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = iop
        # Pixel (0, 0) of a displayed slice is the patient's right-anterior corner: LPS x, y < 0.
        x0, y0 = -(width / 2) * pixel_mm, -(height / 2) * pixel_mm
        corner = {"standard": (x0, y0), "flipped": (-x0, -y0), "transposed": (x0, y0)}[orientation]
        ds.ImagePositionPatient = [round(corner[0], 3), round(corner[1], 3), round(k * spacing_mm - 300.0, 3)]
        ds.PixelSpacing = [pixel_mm, pixel_mm]
        ds.SliceThickness = spacing_mm
        ds.Rows, ds.Columns = image.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
        ds.PixelData = np.ascontiguousarray(image).tobytes()
        name = f"IM{order[k]:04d}" + ("" if extensionless else ".dcm")
        ds.save_as(folder / name, enforce_file_format=True)
        paths.append(folder / name)
    return paths


def write_nifti(path: str | pathlib.Path, hu: np.ndarray, spacing_mm: float = 5.0,
                pixel_mm: float = 1.5, axcodes: str = "RAS", slope: float = 1.0,
                intercept: float = 0.0) -> pathlib.Path:
    """Writes `hu` (radiological display order) as a NIfTI file with nibabel, its voxel axes
    stored in `axcodes` order (e.g. "RAS", "LPS", "LAS", "SAR"), int16 with scl_slope/scl_inter."""
    import nibabel as nib
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

    # display[k, r, c]: k inferior->superior, r anterior->posterior, c right->left; RAS[x, y, z].
    ras = hu.transpose(2, 1, 0)[::-1, ::-1, :]
    ras_affine = np.diag([pixel_mm, pixel_mm, spacing_mm, 1.0])
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(axcodes)))
    data = apply_orientation(ras, transform)
    affine = ras_affine @ inv_ornt_aff(transform, ras.shape)
    stored = np.rint((data - intercept) / slope).astype(np.int16)
    image = nib.Nifti1Image(stored, affine)
    image.header.set_slope_inter(slope, intercept)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path
