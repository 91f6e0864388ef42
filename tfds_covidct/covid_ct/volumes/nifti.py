"""NIfTI CT -> a Volume, read with nibabel.

Orientation: nibabel's `io_orientation(affine)` (what `as_closest_canonical` uses) names the voxel
axis closest to each RAS+ axis and its sign; the axial slab is read along the S axis and turned so
that columns run R->L and rows A->P (radiological display). Reading slab by slab (not
`as_closest_canonical`, which loads the whole array) keeps one slice in memory;
`get_fdata`-style scaling (scl_slope/inter) is applied by nibabel's array proxy.

NaN (and infinite) voxels, which float NIfTI exports write where there is no data: outside the
body (the scanner's circular field of view, a crop's padding) they are air (AIR_HU) and the volume
is kept with a note counting them; inside the body (the body outline with its holes filled, so the
lungs included) no value would be honest, and the volume is a skip, `volume_nan_in_body`, naming
the slice and the count.
"""

from __future__ import annotations

import pathlib

import numpy as np
from scipy import ndimage

from tfds_covidct.covid_ct.volumes.selection import (
    MIN_SLICES,
    Options,
    Volume,
    VolumeError,
    body_mask,
    reason_of,
    select,
    square_pixels,
)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_STREAMLESS_VOXELS = 400_000_000  # a NIfTI whose axial slabs are not contiguous is read whole
AIR_HU = -1000.0


def is_nifti(name: str) -> bool:
    return name.lower().endswith(NIFTI_SUFFIXES)


def fill_outside_body(hu: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """(the slice with its non-finite voxels set to AIR_HU, how many there were).

    Raises VolumeError("volume_nan_in_body") when any of them lies inside the body (its outline
    with holes filled: the lungs are inside). `where` names the slice for the message.
    """
    bad = ~np.isfinite(hu)
    count = int(bad.sum())
    if not count:
        return hu, 0
    inside = bad & ndimage.binary_fill_holes(body_mask(np.where(bad, AIR_HU, hu)))
    if inside.any():
        raise VolumeError("volume_nan_in_body", f"{int(inside.sum())} NaN/infinite voxel(s) inside "
                          f"the body (lungs included) in {where}: no value to give them")
    return np.where(bad, np.float32(AIR_HU), hu), count


def read_nifti(path: pathlib.Path, options: Options) -> Volume:
    import nibabel as nib
    from nibabel.orientations import io_orientation

    try:
        image = nib.load(str(path), keep_file_open=True if path.name.lower().endswith(".gz") else None)
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for a bad header
        raise VolumeError(reason_of(e), f"{type(e).__name__}: {e}") from None
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
        return square_pixels(np.ascontiguousarray(image2d, np.float32),
                              (float(zooms[y_axis]), float(zooms[x_axis])))

    z_mm = np.arange(count, dtype=np.float64) * float(zooms[s_axis])
    file_order = sorted(range(count), key=voxel_index)  # read in file order: gzip streams forward
    pixel_mm = (float(zooms[x_axis]), float(zooms[x_axis]))  # square after square_pixels
    filled: dict[int, int] = {}  # slice -> non-finite voxels set to air

    def read_checked(k: int) -> np.ndarray:
        hu, filled[k] = fill_outside_body(read_slice(k), f"axial slice {k} of {count}")
        if len(filled) == 1:  # the first slice read (in file order: gzip is not re-read from the start)
            _check_hu(hu)
        return hu

    slices, lung_range = select(count, z_mm, read_checked, pixel_mm, options, file_order)
    codes = "".join(nib.aff2axcodes(affine))
    notes.insert(0, f"nifti_axes:{codes}")
    if any(filled.values()):
        notes.append(f"nifti_nan_outside_body_as_air:{sum(filled.values())}_voxels_in_"
                     f"{sum(1 for n in filled.values() if n)}_slices")
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
