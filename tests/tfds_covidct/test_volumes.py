"""CT volumes as dataset sources: real pydicom/nibabel readers on small synthetic volumes the tests
write themselves (phantoms.volume_hu in Hounsfield units; never patient data).

Slices must come out upright (radiological: patient right on the image's left, anterior up) from
any stored orientation, in the lung window, through the lungs and spaced apart; every bad volume is
a skip with its reason; a build mixing images and volumes keeps each volume in one split.
"""

import csv
import pathlib

import numpy as np
import pytest
from PIL import Image

from tfds_covidct.covid_ct import (
    audit,
    phantom_volumes,
    phantoms,
    pipeline,
    process,
    sources,
    volumes,
)
from tfds_covidct.covid_ct.curation import Curation
from tfds_covidct.errors import DatasetError

DEPTH, HEIGHT, WIDTH = 36, 112, 140


@pytest.fixture(scope="module")
def hu():
    return phantoms.volume_hu(0, "covid", depth=DEPTH, height=HEIGHT, width=WIDTH)


def _pixel_mm(volume):
    """A 210-mm field of view whatever the phantom's size: a smaller copy has larger pixels."""
    return 210.0 / volume.shape[2]


def _dicom(folder, volume, **kwargs):
    return phantoms.write_dicom_series(folder, volume, pixel_mm=_pixel_mm(volume), **kwargs)


def _nifti(path, volume, **kwargs):
    return phantoms.write_nifti(path, volume, pixel_mm=_pixel_mm(volume), **kwargs)


def _members(folder):
    return tuple(sorted(p.name for p in pathlib.Path(folder).iterdir() if p.is_file()))


def _one(result):
    assert len(result) == 1, result
    return result[0]


def _assert_upright(volume, hu):
    """Every slice equals the phantom's own slice (radiological order) to within rounding, and
    not any of its flips: the orientation is right, not just close."""
    assert isinstance(volume, volumes.Volume), volume
    for s in volume.slices:
        truth = hu[s.index]
        assert s.hu.shape == truth.shape
        assert np.abs(s.hu - truth).max() <= 1.0  # stored as integers: rounding only
        for wrong in (truth[::-1], truth[:, ::-1]):
            assert np.abs(s.hu - wrong).mean() > 50


def test_phantom_volume_is_anatomical(hu):
    mid = hu[DEPTH // 2]
    # Lungs dark, spine bright at the bottom (posterior), heart on the image's right (patient left).
    assert np.percentile(mid, 1) <= -990 and mid.max() >= 600
    spine_row = np.argmax((mid > 400).sum(axis=1))
    assert spine_row > HEIGHT * 0.7
    left_half, right_half = mid[:, :WIDTH // 2], mid[:, WIDTH // 2:]
    assert (left_half < -700).sum() > (right_half < -700).sum()  # the larger lung is the right one
    assert (hu[0] > -700).sum() > 0 and volumes.lung_area_mm2(hu[0], (1.5, 1.5)) == 0.0


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "LAS", "SAR"])
def test_nifti_in_any_stored_orientation_comes_out_radiological(tmp_path, hu, axcodes):
    path = _nifti(tmp_path / f"v_{axcodes}.nii.gz", hu, axcodes=axcodes,
                                slope=0.5, intercept=-1024.0)
    volume = _one(volumes.read(path))
    _assert_upright(volume, hu)
    assert volume.format == "NIfTI" and f"nifti_axes:{axcodes}" in volume.notes


@pytest.mark.parametrize("orientation", ["standard", "flipped", "transposed"])
def test_dicom_series_in_any_orientation_comes_out_radiological(tmp_path, hu, orientation):
    folder = tmp_path / orientation
    _dicom(folder, hu, orientation=orientation, patient_id="P-7")
    volume = _one(volumes.read(folder, _members(folder)))
    _assert_upright(volume, hu)
    assert volume.patient == "P-7" and volume.series
    # Slice order is by position along the body axis, inferior first, whatever the file names.
    assert [s.z_mm for s in volume.slices] == sorted(s.z_mm for s in volume.slices)


@pytest.mark.parametrize("slope,intercept", [(1.0, -1024.0), (2.0, -2048.0), (1.0, 0.0), (0.5, -1000.0)])
def test_dicom_rescale_slope_and_intercept_give_hounsfield_units(tmp_path, hu, slope, intercept):
    folder = tmp_path / "s"
    _dicom(folder, hu, slope=slope, intercept=intercept)
    volume = _one(volumes.read(folder, _members(folder)))
    for s in volume.slices:
        assert np.abs(s.hu - hu[s.index]).max() <= slope / 2 + 1e-3


def test_enhanced_ct_multiframe_file_is_read_frame_by_frame(tmp_path, hu):
    """One Enhanced CT file holding the whole series (frames shuffled, a rescale of its own per
    frame, orientation shared) reads like the series it stands for: a reader that took one
    rescale for all frames, the file's frame order, or one frame per file would not."""
    rescales = [(1.0, -1024.0), (0.5, -2048.0), (0.25, -1000.0)]
    path = phantoms.write_enhanced_ct(tmp_path / "covid" / "enhanced" / "ct.dcm", hu, rescales,
                                      pixel_mm=_pixel_mm(hu), orientation="flipped")
    volume = _one(volumes.read(path.parent, ("ct.dcm",)))
    _assert_upright(volume, hu)
    assert volume.shape == hu.shape and len(volume.slices) >= 4
    assert "dicom_multiframe:36_frames_per_frame_functional_groups" in volume.notes
    # Found as a DICOM volume and kept through the same cleaning as a series.
    (item,) = [f for src in sources.discover(str(tmp_path)) for f in src.files]
    assert (item.volume, item.members) == ("dicom", ("ct.dcm",))
    spool = tmp_path / "spool"
    spool.mkdir()
    records = process.process_volume(item, item.display, (64, 64), Curation([]), str(spool))
    assert len(records) == len(volume.slices) and all(r.image for r in records), records


def _with_nan(hu, where):
    out = hu.copy()
    out[where] = np.nan
    return out


def test_nifti_nan_outside_the_body_is_air_and_inside_it_a_skip(tmp_path, hu):
    """Float NIfTI exports write NaN where there is no data. Outside the body (here the corners
    outside a circular field of view) it is air, -1000 HU, and the volume is kept with a note;
    inside the body (a hole in one lung) the volume is a skip with its reason."""
    _, rows, cols = np.ogrid[:DEPTH, :HEIGHT, :WIDTH]
    outside_fov = ((rows - HEIGHT / 2) ** 2 + (cols - WIDTH / 2) ** 2 > (HEIGHT / 2) ** 2) & (hu < -990)
    outside_fov = np.broadcast_to(outside_fov, hu.shape)
    assert outside_fov.any(axis=(1, 2)).all()  # NaN in every slice
    path = _nifti(tmp_path / "fov.nii.gz", _with_nan(hu, outside_fov), floats=True)
    volume = _one(volumes.read(path))
    _assert_upright(volume, np.where(outside_fov, -1000.0, hu))
    assert any(n.startswith("nifti_nan_outside_body_as_air:") for n in volume.notes), volume.notes
    for s in volume.slices:
        assert (s.gray[outside_fov[s.index]] == volumes.window(np.array([-1000.0]), 1500, -600)).all()
    k = DEPTH // 2
    from scipy import ndimage

    lung = np.argwhere(ndimage.binary_erosion(np.abs(hu[k] - phantom_volumes.LUNG_HU) < 60, iterations=3))
    r, c = lung[len(lung) // 2]  # a 5x5 block inside one lung
    hole = np.zeros(hu.shape, bool)
    hole[k, r - 2:r + 3, c - 2:c + 3] = True
    error = _one(volumes.read(_nifti(tmp_path / "hole.nii.gz", _with_nan(hu, hole), floats=True)))
    assert isinstance(error, volumes.VolumeError) and error.reason == "volume_nan_in_body", error
    assert "25 NaN" in error.detail and f"axial slice {k} of {DEPTH}" in error.detail


def test_slices_are_through_the_lungs_spaced_and_in_the_lung_window(tmp_path, hu):
    path = _nifti(tmp_path / "v.nii", hu)
    options = volumes.Options(slices=5, min_gap_mm=10.0)
    volume = _one(volumes.read(path, options=options))
    areas = np.array([volumes.lung_area_mm2(hu[k], (1.5, 1.5)) for k in range(DEPTH)])
    assert len(volume.slices) == 5
    for s in volume.slices:
        assert areas[s.index] >= 0.5 * areas.max()
        np.testing.assert_array_equal(s.gray, volumes.window(s.hu, 1500, -600))
    gaps = np.diff([s.z_mm for s in volume.slices])
    assert gaps.min() >= 10.0
    # The lung window (W 1500 / L -600 maps -1350..150 HU to 0..255): air (-1000) dark grey,
    # lung parenchyma a little lighter, ground glass lighter still, soft tissue near white.
    gray = volume.slices[2].gray
    truth = hu[volume.slices[2].index]
    assert np.all(np.abs(gray[truth <= -1000].astype(int) - 60) <= 1)
    assert 70 < np.median(gray[(truth < -800) & (truth > -900)]) < 100
    assert np.median(gray[(truth > 20) & (truth < 70)]) > 220
    assert volumes.window(np.array([-1350.0, -600.0, 150.0]), 1500, -600).tolist() == [0, 128, 255]


def test_slice_count_and_gap_are_options(tmp_path, hu):
    path = _nifti(tmp_path / "v.nii.gz", hu)
    assert len(_one(volumes.read(path, options=volumes.Options(slices=2))).slices) == 2
    # 5-mm slices through ~80 mm of lungs: a 40-mm gap leaves room for at most 3.
    spaced = _one(volumes.read(path, options=volumes.Options(slices=8, min_gap_mm=40)))
    assert 2 <= len(spaced.slices) <= 3


def _reason(result):
    (item,) = result
    assert isinstance(item, volumes.VolumeError), item
    return item.reason


def test_bad_dicom_series_are_skipped_with_their_reason(tmp_path, hu):
    small = hu[:, ::2, ::2].copy()
    # A truncated file: the pixel data ends early.
    a = tmp_path / "truncated"
    paths = _dicom(a, small)
    paths[5].write_bytes(paths[5].read_bytes()[:-500])
    assert _reason(volumes.read(a, _members(a))) == "volume_truncated"
    # A missing slice in the middle of the series.
    b = tmp_path / "missing"
    _dicom(b, small)
    import pydicom
    victim = next(p for p in b.iterdir() if float(pydicom.dcmread(p).ImagePositionPatient[2]) == 20 * 5.0 - 300)
    victim.unlink()
    assert _reason(volumes.read(b, _members(b))) == "volume_missing_slices"
    # Mixed orientations in one series.
    c = tmp_path / "mixed"
    paths = _dicom(c, small)
    ds = pydicom.dcmread(paths[3])
    ds.ImageOrientationPatient = [0, 1, 0, 1, 0, 0]
    ds.save_as(paths[3])
    assert _reason(volumes.read(c, _members(c))) == "volume_mixed_orientations"
    # Not CT.
    d = tmp_path / "mr"
    _dicom(d, small, modality="MR")
    assert _reason(volumes.read(d, _members(d))) == "volume_not_ct"
    # A compressed transfer syntax whose decoder is an optional package that is not installed.
    e = tmp_path / "jpegls"
    paths = _dicom(e, small)
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLosslessSV1
    assert not get_decoder(JPEGLosslessSV1).is_available  # if it ever is, pick another syntax
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        from pydicom.encaps import encapsulate
        ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 64 + b"\xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds.save_as(p, enforce_file_format=True)
    error = _one(volumes.read(e, _members(e)))
    assert error.reason == "volume_compressed_needs_plugin"
    assert "pylibjpeg" in error.detail or "gdcm" in error.detail
    # A localizer: too few slices to be a volume.
    f = tmp_path / "scout"
    _dicom(f, small[:3])
    assert _reason(volumes.read(f, _members(f))) == "volume_too_few_slices"


def test_a_folder_with_two_series_and_a_broken_file_gives_each_its_own_result(tmp_path, hu):
    small = hu[:, ::2, ::2].copy()
    folder = tmp_path / "study"
    _dicom(folder, small, patient_id="A", series_uid="1.2.3.1")
    for p in _dicom(tmp_path / "tmp", small[:, ::-1].copy(), patient_id="A",
                                         series_uid="1.2.3.2"):
        p.rename(folder / ("B" + p.name))
    (folder / "README.dcm").write_text("not dicom")
    results = volumes.read(folder, _members(folder))
    assert sum(isinstance(r, volumes.Volume) for r in results) == 2
    assert [r.reason for r in results if isinstance(r, volumes.VolumeError)] == ["volume_corrupt"]


def test_bad_nifti_files_are_skipped_with_their_reason(tmp_path, hu):
    small = hu[:, ::2, ::2].copy()
    gz = _nifti(tmp_path / "cut.nii.gz", small)
    gz.write_bytes(gz.read_bytes()[: len(gz.read_bytes()) // 2])
    assert _reason(volumes.read(gz)) == "volume_truncated"
    raw = _nifti(tmp_path / "cut.nii", small)
    raw.write_bytes(raw.read_bytes()[:-1000])
    assert _reason(volumes.read(raw)) == "volume_truncated"
    (tmp_path / "junk.nii").write_bytes(b"\x00" * 100)
    assert _reason(volumes.read(tmp_path / "junk.nii")) == "volume_corrupt"
    mask = _nifti(tmp_path / "mask.nii.gz", (small > -500).astype(np.float32))
    assert _reason(volumes.read(mask)) == "volume_not_ct"
    flat = _nifti(tmp_path / "thin.nii.gz", small[:4])
    assert _reason(volumes.read(flat)) == "volume_too_few_slices"


def test_process_volume_rejects_with_reason_and_never_raises(tmp_path, hu):
    folder = tmp_path / "covid" / "mr"
    _dicom(folder, hu[:, ::2, ::2].copy(), modality="MR")
    item = sources.InputFile("folder", "covid", str(folder), display="covid/mr/", group="volume:x",
                             volume="dicom", members=_members(folder))
    spool = tmp_path / "spool"
    spool.mkdir()
    (record,) = process.process_volume(item, item.display, (64, 64), Curation([]), str(spool))
    assert (record.decision, record.reason) == ("rejected", "volume_not_ct")
    assert "Modality 'MR'" in record.detail and record.volume == "covid/mr/"


def _image(path, index, label):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(phantoms.figure(index, label, "plain").rgb).save(path)


def test_discovery_finds_volumes_beside_images_and_labels_them(tmp_path, hu):
    root = tmp_path / "manual"
    small = hu[:, ::2, ::2].copy()
    _image(root / "covid" / "a.png", 0, "covid")
    _nifti(root / "covid" / "v1.nii.gz", small)
    _dicom(root / "non_covid" / "p9" / "series1", small, extensionless=True)
    _nifti(root / "mosmed" / "studies" / "CT-2" / "study_0001.nii.gz", small)
    _nifti(root / "other" / "x.nii.gz", small)
    (root / "labels.csv").write_text("path,label,patient\nother/x.nii.gz,non_covid,pt-4\n")
    found = sources.discover(str(root))
    by_display = {f.display: f for src in found for f in src.files}
    assert by_display["covid/a.png"].volume == ""
    assert (by_display["covid/v1.nii.gz"].volume, by_display["covid/v1.nii.gz"].label) == ("nifti", "covid")
    dicom = by_display["non_covid/p9/series1/"]
    assert (dicom.volume, dicom.label, len(dicom.members)) == ("dicom", "non_covid", DEPTH)
    assert dicom.group == "series:non_covid/p9"  # the patient folder groups its series
    assert by_display["mosmed/studies/CT-2/study_0001.nii.gz"].label == "covid"
    other = by_display["other/x.nii.gz"]
    assert (other.label, other.group, other.skip) == ("non_covid", "patient:volumes/pt-4", None)


def test_unlabelled_volumes_are_skips_or_a_clear_error(tmp_path, hu):
    root = tmp_path / "manual"
    _nifti(root / "scans" / "x.nii.gz", hu[:, ::2, ::2].copy())
    with pytest.raises(DatasetError, match="labels CSV"):
        sources.discover(str(root))
    _image(root / "covid" / "a.png", 0, "covid")
    (unlabelled,) = [f for src in sources.discover(str(root)) for f in src.files if f.volume]
    assert unlabelled.skip == "no_label"
    labels = tmp_path / "labels.csv"
    labels.write_text("volume,class\nx,COVID-19\n")  # the name without .nii.gz, a synonym
    (labelled,) = [f for src in sources.discover(str(root), labels_csv=str(labels))
                   for f in src.files if f.volume]
    assert (labelled.label, labelled.skip) == ("covid", None)
    labels.write_text("volume,class\nx,maybe\n")
    with pytest.raises(DatasetError, match=r"labels.csv:2: label 'maybe'"):
        sources.discover(str(root), labels_csv=str(labels))


def test_chestxray_volume_rows_are_volumes(tmp_path, hu):
    root = tmp_path / "manual" / "covid-chestxray-dataset"
    _nifti(root / "volumes" / "coronacases_001.nii.gz", hu[:, ::2, ::2].copy())
    _image(root / "images" / "a.png", 1, "covid")
    with (root / "metadata.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patientid", "finding", "modality", "view", "folder", "filename"])
        w.writerow(["7", "Pneumonia/Viral/COVID-19", "CT", "Axial", "volumes", "coronacases_001.nii.gz"])
        w.writerow(["8", "Pneumonia/Viral/COVID-19", "CT", "Axial", "images", "a.png"])
    found = sources.discover(str(tmp_path / "manual"))
    files = [f for src in found for f in src.files]
    (volume,) = [f for f in files if f.volume]
    assert (volume.source, volume.label, volume.group) == (
        "covid-chestxray-dataset", "covid", "patient:covid-chestxray-dataset/7")
    assert len(files) == 2  # the volume is not found a second time as an unlabelled one


def _mixed_manual_dir(root, hu_of):
    """Images and volumes of both labels, plus a corrupt and a non-CT volume."""
    for i in range(10):
        for label in ("covid", "non_covid"):
            _image(root / label / f"img_{i}.png", i, label)
    for i in range(3):
        for label in ("covid", "non_covid"):
            volume = hu_of(i, label)
            if i % 2:
                _nifti(root / label / f"vol_{i}.nii.gz", volume, axcodes="LPS")
            else:
                _dicom(root / label / f"patient{i}" / "ct", volume,
                                            patient_id=f"{label}-{i}", orientation="flipped")
    _dicom(root / "covid" / "patient9" / "mr", hu_of(5, "covid"), modality="MR")
    cut = _nifti(root / "non_covid" / "cut.nii.gz", hu_of(6, "non_covid"))
    cut.write_bytes(cut.read_bytes()[:2000])


def _small_hu(i, label):
    return phantoms.volume_hu(i, label, depth=30, height=96, width=120)


def test_plan_mixing_images_and_volumes_keeps_each_volume_in_one_split(tmp_path):
    root = tmp_path / "manual"
    _mixed_manual_dir(root, _small_hu)
    spool = tmp_path / "spool"
    spool.mkdir()
    plan = pipeline.plan(str(root), (64, 64), str(spool), workers=1)
    records = plan.records
    summary = audit.summarise(records)
    assert summary["volumes"]["found"] == 8
    assert summary["volumes"]["used"] == 6 and summary["volumes"]["rejected"] == 2
    assert summary["rejected_by_reason"] == {"volume_not_ct": 1, "volume_truncated": 1}
    assert summary["groups_in_both_splits"] == 0
    slices = [r for r in records if r.slice]
    assert len(slices) == summary["volumes"]["slices_taken"] >= 6 * 4
    by_volume = {}
    for r in slices:
        by_volume.setdefault(r.volume, set()).add(r.split_group)
        assert r.format in ("DICOM", "NIfTI") and "lung_window_W1500_L-600" in r.notes
    assert all(len(groups) == 1 for groups in by_volume.values())
    dicom = [r for r in slices if r.format == "DICOM"]
    assert {r.group for r in dicom} == {"patient:dicom/covid-0", "patient:dicom/covid-2",
                                        "patient:dicom/non_covid-0", "patient:dicom/non_covid-2"}
    # The spooled slice is the cleaned 64x64 image; the audit row says where in the volume it was.
    kept = next(r for r in slices if r.decision == "kept")
    assert np.asarray(Image.open(kept.image)).shape == (64, 64)
    assert kept.slice.startswith("slice ") and "z=" in kept.slice
    line = audit.summary_line(summary)
    assert "CT volumes 8 (6 used, 2 rejected)" in line and "kept per source: folder" in line


@pytest.mark.heavy
def test_build_mixing_images_and_volumes_through_tfds(tmp_path):
    """The real builder (TFDS) on images and volumes: both labels, both splits, one split per volume,
    audit and contact sheet with the volumes' rows."""
    import tensorflow_datasets as tfds

    from tfds_covidct import build as build_lib

    root = tmp_path / "manual"
    _mixed_manual_dir(root, _small_hu)
    # Enough volumes for a test split by patient: 10 more small NIfTI patients.
    for i in range(10, 20):
        label = ("covid", "non_covid")[i % 2]
        _nifti(root / label / f"more_{i}.nii.gz", _small_hu(i, label))
    summary = build_lib.build("64-lungs", str(tmp_path / "data"), manual_dir=str(root), workers=2,
                              volume_options=volumes.Options(slices=4))
    assert summary.volumes["found"] == 18 and summary.volumes["used"] == 16
    assert summary.splits.get("test", 0) > 0 and summary.splits.get("train", 0) > 0
    assert "CT volumes 18" in summary.line()
    rows = list(csv.DictReader(open(summary.audit_csv, encoding="utf-8")))
    splits = {}
    for row in rows:
        if row["slice"] and row["decision"] == "kept":
            splits.setdefault(row["volume"], set()).add(row["split"])
    assert len(splits) == 16 and all(len(s) == 1 for s in splits.values())
    assert all(len([r for r in rows if r["volume"] == v and r["slice"]]) <= 4 for v in splits)
    ds = tfds.load("covid_ct/64-lungs", data_dir=str(tmp_path / "data"), split="train")
    sources_seen = {ex["file_name"].numpy().decode() for ex in ds}
    assert any("#" in name for name in sources_seen) and any(name.endswith(".png") for name in sources_seen)
    assert pathlib.Path(summary.contact_sheet).stat().st_size > 10_000
