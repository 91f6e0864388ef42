"""Real scans (COVIDCT_SAMPLE_DIR, set by .ci/run): every config builds from the sample, with the
right shapes, labels, counts and audit, and the body fills the frame."""

import csv
import os
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_covidct import build as build_lib
from tfds_covidct.covid_ct.resolutions import RESOLUTIONS

SAMPLE = os.environ.get("COVIDCT_SAMPLE_DIR")

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.skipif(not SAMPLE, reason="COVIDCT_SAMPLE_DIR is not set: no real scans to build from"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    sample = pathlib.Path(SAMPLE)
    if not sample.is_dir():
        pytest.skip(f"COVIDCT_SAMPLE_DIR={SAMPLE} is not a folder")
    data_dir = tmp_path_factory.mktemp("tfds")
    return str(data_dir), {c: build_lib.build(c, str(data_dir), manual_dir=str(sample)) for c in RESOLUTIONS}


def test_counts_are_the_same_for_every_config(built):
    _, summaries = built
    sample = pathlib.Path(SAMPLE)
    expected_found = (len(list((sample / "CT_COVID").iterdir())) + len(list((sample / "CT_NonCOVID").iterdir()))
                      + len(list((sample / "chestxray_ct").glob("*.[jpJP][pnPN]*"))))
    for config, s in summaries.items():
        assert not s.synthetic
        assert s.found == expected_found, config
        assert s.kept + s.duplicates + s.rejected == s.found
        assert s.rejected_by_reason.get("not_axial") == 4  # the sample's 4 coronal reconstructions
        assert s.rejected_by_reason.get("curated_exclude") == 1  # the photographed monitor
        assert s.kept >= 0.9 * s.found, (config, s.line())
        assert 0.03 * s.kept < s.splits["test"] < 0.25 * s.kept  # ~10% of groups, groups vary in size
        assert s.labels["covid"] > 50 and s.labels["non_covid"] > 50
    # The framing and size change the crop, never where a scan goes; a large size with a tight
    # lung crop refuses more tiny figures as too_small (more than 4x enlargement), nothing else.
    assert len({s.kept + s.rejected_by_reason.get("too_small", 0) for s in summaries.values()}) == 1
    assert len({s.kept for c, s in summaries.items() if not c.endswith("-lungs")}) == 1


def test_no_patient_paper_or_copy_is_on_both_sides(built):
    """Groups from the sources' metadata (paper prefix of COVID-CT names, NonCOVID patient ids,
    chest-x-ray patientid), computed here from the files themselves, never straddle the split."""
    import collections
    import re

    sample = pathlib.Path(SAMPLE)
    chestxray = {r["filename"]: r["patientid"] for r in csv.DictReader(open(sample / "chestxray_ct" / "metadata.csv"))}
    with open(pathlib.Path(__file__).parents[2] / "tfds_covidct/covid_ct/noncovid_patients.csv") as f:
        patients = {r["image name"]: r["patient id"] for r in csv.DictReader(l for l in f if not l.startswith("#"))}
    _, summaries = built
    with open(summaries["64"].audit_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    splits = collections.defaultdict(set)
    for r in rows:
        if r["decision"] != "kept":
            continue
        name = r["file_name"]
        if r["source"] == "covid-chestxray-dataset":
            key = "cxr" + chestxray[name]
        elif r["label"] == "non_covid":
            key = "noncovid" + patients[name]
        else:
            key = "paper" + (re.match(r"^(.+?)-p\d+-", name) or re.match(r"^([^_%]+)", name)).group(1)
        splits[key].add(r["split"])
        splits["joined" + r["split_group"]].add(r["split"])
    both = sorted(k for k, v in splits.items() if len(v) > 1)
    assert both == [], both
    assert sum(1 for v in splits.values() if v == {"test"}) >= 3  # a real hold-out, not empty


def test_lung_configs_frame_the_lungs_inside_the_body_box(built):
    _, summaries = built
    with open(summaries["64-lungs"].audit_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["decision"] == "kept"]
    with_lungs = [r for r in rows if r["lung_box"]]
    assert len(with_lungs) >= 0.85 * len(rows)
    ratios = []
    for r in with_lungs:
        bx0, by0, bx1, by1 = (int(v) for v in r["body_box"].split(","))
        lx0, ly0, lx1, ly1 = (int(v) for v in r["lung_box"].split(","))
        assert bx0 <= lx0 < lx1 <= bx1 and by0 <= ly0 < ly1 <= by1, r
        assert r["box"] == r["lung_box"]  # the -lungs config crops to it
        ratios.append((lx1 - lx0) * (ly1 - ly0) / ((bx1 - bx0) * (by1 - by0)))
    # Tighter than the body (the issue: the body box is ~1.7x the hand-cropped lung field).
    assert 0.4 < np.median(ratios) < 0.9, np.median(ratios)


@pytest.mark.parametrize("config", list(RESOLUTIONS))
def test_shapes_labels_and_a_body_that_fills_the_frame(built, config):
    data_dir, summaries = built
    height, width = RESOLUTIONS[config]
    builder = tfds.builder(f"covid_ct/{config}", data_dir=data_dir)
    assert builder.info.splits["train"].num_examples == summaries[config].splits["train"]
    fill = []
    for ex in tfds.as_numpy(builder.as_dataset(split="train")):
        image = ex["image"]
        assert image.shape == (height, width, 1) and image.dtype == np.uint8
        assert ex["label"] in (0, 1) and ex["source"] in (b"covid-ct", b"covid-chestxray-dataset")
        tissue = image[..., 0] > 20
        # The body spans the frame along its longer side (the padding goes on the other side).
        fill.append(max(tissue.any(axis=0).mean(), tissue.any(axis=1).mean()))
    assert np.median(fill) > 0.9, np.median(fill)
    assert np.percentile(fill, 10) > 0.75, np.percentile(fill, 10)


def test_audit_has_one_row_per_input(built):
    _, summaries = built
    s = summaries["64"]
    with open(s.audit_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == s.found
    kept = [r for r in rows if r["decision"] == "kept"]
    assert all(r["box"] and r["sha256"] for r in kept)
    assert all(r["reason"] and r["detail"] for r in rows if r["decision"] == "rejected")
    assert all(r["duplicate_of"] for r in rows if r["decision"] == "duplicate")
    assert pathlib.Path(s.contact_sheet).stat().st_size > 50_000
