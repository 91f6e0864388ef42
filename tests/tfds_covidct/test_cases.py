"""The failing inputs of issue 15 (COVIDCT_CASES_DIR/dataset, set by .ci/run), each built with the
real sample (COVIDCT_SAMPLE_DIR) through the real TFDS builder: each case gives the behaviour its
README names. The files are read where they are, through a symlinked manual_dir, never copied."""

import csv
import os
import pathlib

import pytest

from tfds_covidct import build as build_lib

CASES = os.environ.get("COVIDCT_CASES_DIR")
SAMPLE = os.environ.get("COVIDCT_SAMPLE_DIR")

pytestmark = [pytest.mark.heavy]


def _dirs():
    if not CASES or not (pathlib.Path(CASES) / "dataset").is_dir():
        pytest.skip(f"COVIDCT_CASES_DIR={CASES!r} has no dataset/ folder: no issue-15 cases here")
    if not SAMPLE or not pathlib.Path(SAMPLE).is_dir():
        pytest.skip(f"COVIDCT_SAMPLE_DIR={SAMPLE!r} is not a folder: the cases need the sample beside them")
    return pathlib.Path(CASES) / "dataset", pathlib.Path(SAMPLE)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """One build of the sample plus every case (symlinks), 64x64; audit rows by case-relative id."""
    cases, sample = _dirs()
    manual = tmp_path_factory.mktemp("manual")
    for folder in ("CT_COVID", "CT_NonCOVID"):
        (manual / folder).mkdir()
        for f in (sample / folder).iterdir():
            (manual / folder / f.name).symlink_to(f)
        for f in sorted(cases.glob(f"*/{folder}/*")):
            (manual / folder / f"{f.parent.parent.name}__{f.name}").symlink_to(f)
    (manual / "chestxray_ct").symlink_to(sample / "chestxray_ct")
    summary = build_lib.build("64", str(tmp_path_factory.mktemp("tfds")), manual_dir=str(manual))
    with open(summary.audit_csv, newline="") as f:
        return {r["file_name"]: r for r in csv.DictReader(f)}


def test_near_duplicate_crop_one_kept_the_other_its_duplicate(rows):
    # The sample holds the same original (same bytes): a family of three, one kept.
    family = [rows["near-duplicate-crop__2020.02.22.20024927-p18-66%0.png"],
              rows["near-duplicate-crop__recropped_copy_of_p18-66%0.png"],
              rows["2020.02.22.20024927-p18-66%0.png"]]
    assert sorted(r["decision"] for r in family) == ["duplicate", "duplicate", "kept"], family
    (kept,) = [r for r in family if r["decision"] == "kept"]
    copy = family[1]
    assert copy["reason"] == "near_duplicate" and copy["duplicate_of"] == kept["id"], copy
    assert "correlation" in copy["detail"]
    assert {r["family"] for r in family} == {kept["id"]}


def test_exif_rotated_is_turned_upright_and_its_twin_is_a_label_conflict(rows):
    rotated = rows["exif-rotated__rotated_with_exif_orientation_6.jpg"]
    twin = rows["exif-rotated__1093.png"]
    assert "exif_orientation_6_applied" in rotated["notes"]
    assert int(rotated["width"]) > int(rotated["height"])  # upright: landscape like its twin
    for r in (rotated, twin):
        assert r["decision"] == "rejected" and r["reason"] == "duplicate_label_conflict", r
    assert rotated["family"] == twin["family"] != ""


def test_sixteen_bit_marker_is_windowed_and_its_8_bit_original_is_a_label_conflict(rows):
    sixteen = rows["sixteen-bit-marker__ct12bit_in16_with_marker.png"]
    original = rows["sixteen-bit-marker__1100.png"]
    assert "windowed_p0.5-p99.5" in sixteen["notes"]
    for r in (sixteen, original):
        assert r["decision"] == "rejected" and r["reason"] == "duplicate_label_conflict", r
    # The crop no longer cuts through the body: it holds the 8-bit original's body box (+-1%).
    a = [int(v) for v in sixteen["body_box"].split(",")]
    b = [int(v) for v in original["body_box"].split(",")]
    slack = 0.01 * 512
    assert a[0] <= b[0] + slack and a[1] <= b[1] + slack, (a, b)
    assert a[2] >= b[2] - slack and a[3] >= b[3] - slack, (a, b)


@pytest.mark.parametrize("name", ["all_black.png", "all_white.jpg", "faint_noise.png", "uniform_16bit.png"])
def test_blank_images_are_rejected_as_no_scan_content(rows, name):
    r = rows[f"blank__{name}"]
    assert r["decision"] == "rejected" and r["reason"] == "no_scan_content", r
    assert "coarse contrast" in r["detail"]


def test_jpeg_without_end_marker_is_kept_with_a_note(rows):
    r = rows["jpeg-without-end-marker__baseline_no_eoi.jpg"]
    assert "jpeg_end_marker_missing:pixels_complete" in r["notes"] and r["box"], r
    # Its pixels are those of the sample's CT_NonCOVID/1115.png, and it sits in CT_COVID: the
    # decoded scan takes part in de-duplication like any other and is found to be that scan
    # under the other label. Alone, it is kept (test_dataset_decode checks the decoder).
    twin = rows["1115.png"]
    assert r["decision"] == twin["decision"] == "rejected", (r, twin)
    assert r["reason"] == twin["reason"] == "duplicate_label_conflict" and r["family"] == twin["family"]
