"""The whole build: bad inputs as recorded skips, curation, deterministic splits, the audit,
the demo build through the real TFDS builder, and whole-build errors."""

import csv
import hashlib
import io
import json
import logging
import struct
import zipfile
import zlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tfds_covidct import build as build_lib
from tfds_covidct.covid_ct import audit, phantoms, pipeline
from tfds_covidct.errors import DatasetError


def _save(path, image, fmt="PNG", **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **kwargs)
    return path


def _phantom(index, label, layout="plain"):
    return Image.fromarray(phantoms.figure(index, label, layout).rgb)


def _bomb_png(width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.fixture
def bad_manual_dir(tmp_path):
    """CT_COVID/CT_NonCOVID with good phantoms and every bad input of the issue."""
    root = tmp_path / "manual"
    covid, non = root / "CT_COVID", root / "CT_NonCOVID"
    for i in range(4):
        _save(covid / f"good_{i}.png", _phantom(i, "covid"))
        _save(non / f"good_{i}.jpg", _phantom(i, "non_covid").convert("L"), "JPEG", quality=90)
    (covid / "zero.png").write_bytes(b"")
    jpeg = io.BytesIO()
    _phantom(9, "covid").save(jpeg, "JPEG")
    (covid / "truncated.png").write_bytes(jpeg.getvalue()[:2000])  # JPEG data named .png, cut short
    (covid / "readme.png").write_text("not an image\n")
    frames = [_phantom(10, "covid").convert("P"), _phantom(11, "covid").convert("P")]
    frames[0].save(covid / "animated.gif", save_all=True, append_images=frames[1:])
    (covid / "bomb.png").write_bytes(_bomb_png(50000, 50000))
    _save(non / "huge.jpg", Image.new("L", (12000, 12000), 90), "JPEG", quality=50)
    sixteen = (np.asarray(_phantom(5, "non_covid").convert("L"), np.uint16) * 16 + 1000)
    _save(non / "sixteen.png", Image.fromarray(sixteen))
    _save(non / "cmyk.jpg", _phantom(6, "non_covid").convert("CMYK"), "JPEG", quality=90)
    with zipfile.ZipFile(root / "extra.zip", "w") as z:
        z.writestr("CT_COVID/../../escape.png", b"x")
        buffer = io.BytesIO()
        _phantom(7, "covid").save(buffer, "PNG")
        z.writestr("CT_COVID/zipped.png", buffer.getvalue())
    return root


EXPECTED_REJECTIONS = {
    "CT_COVID/zero.png": "empty_file",
    "CT_COVID/truncated.png": "truncated",
    "CT_COVID/readme.png": "not_an_image",
    "CT_COVID/animated.gif": "animated",
    "CT_COVID/bomb.png": "decompression_bomb",
    "CT_NonCOVID/huge.jpg": "oversize",
    "extra.zip/CT_COVID/../../escape.png": "unsafe_zip_entry",
}


def test_every_bad_input_is_a_recorded_skip_with_its_reason(bad_manual_dir, tmp_path):
    (tmp_path / "spool").mkdir()
    plan = pipeline.plan(str(bad_manual_dir), (64, 64), str(tmp_path / "spool"), workers=1)
    by_id = {r.id: r for r in plan.records}
    assert len(by_id) == 8 + 7 + 2 + 1  # good + bad + 16-bit/CMYK + zipped: one row per input
    for record_id, reason in EXPECTED_REJECTIONS.items():
        assert by_id[record_id].decision == "rejected", record_id
        assert by_id[record_id].reason == reason and by_id[record_id].detail, record_id
    for kept in ("CT_NonCOVID/sixteen.png", "CT_NonCOVID/cmyk.jpg", "extra.zip/CT_COVID/zipped.png"):
        assert by_id[kept].decision == "kept", (kept, by_id[kept].reason, by_id[kept].detail)
    assert by_id["CT_NonCOVID/cmyk.jpg"].mode == "CMYK"


def test_curation_file_in_manual_dir_excludes_and_crops(tmp_path):
    root = tmp_path / "manual"
    for i in range(3):
        _save(root / "covid" / f"scan_{i}.png", _phantom(i, "covid"))
    sha = hashlib.sha256((root / "covid" / "scan_2.png").read_bytes()).hexdigest()
    (root / "curation.csv").write_text(
        "key,action,box,reason\n"
        "scan_0.png,exclude,,arrow burned into the lung\n"
        f"{sha},crop,\"20,30,220,230\",panel letter\n")
    (tmp_path / "spool").mkdir()
    plan = pipeline.plan(str(root), (64, 64), str(tmp_path / "spool"), workers=1)
    by_name = {r.file_name: r for r in plan.records}
    assert by_name["scan_0.png"].decision == "rejected"
    assert by_name["scan_0.png"].reason == "curated_exclude" and "arrow" in by_name["scan_0.png"].detail
    assert by_name["scan_1.png"].decision == "kept" and by_name["scan_1.png"].box != "20,30,220,230"
    assert by_name["scan_2.png"].box == "20,30,220,230" and "panel letter" in by_name["scan_2.png"].notes

    (root / "curation.csv").write_text("key,action,box,reason\nscan_1.png,crop,\"5,5,1\",oops\n")
    with pytest.raises(DatasetError, match=r"curation.csv:2: crop box"):
        pipeline.plan(str(root), (64, 64), str(tmp_path / "spool"), workers=1)


def test_split_is_a_function_of_content_and_about_ten_percent():
    rng = np.random.default_rng(0)
    hashes = [bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex() for _ in range(4000)]
    test_share = np.mean([pipeline.split_of(h) == "test" for h in hashes])
    assert 0.08 < test_share < 0.12
    assert [pipeline.split_of(h) for h in hashes[:50]] == [pipeline.split_of(h) for h in hashes[:50]]


def test_demo_build_through_tfds(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfds_covidct")
    data_dir = str(tmp_path / "tfds")
    summary = build_lib.build("28", data_dir, demo=True)
    assert summary.synthetic and summary.dataset == "covid_ct/28"
    assert summary.found == 2 * phantoms.DEFAULT_PER_CLASS
    assert summary.kept == summary.found and summary.duplicates == 0 and summary.rejected == 0
    assert summary.splits["test"] > 0 and summary.splits["train"] > summary.splits["test"]

    # Every log line of the demo build names it synthetic; the last one has the counts.
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("tfds_covidct")]
    assert lines and all("SYNTHETIC" in line for line in lines), lines
    assert f"found {summary.found}, kept {summary.kept}" in lines[-1]

    # The audit: one row per input, the JSON agrees, the sheet is a real picture, the log ends with counts.
    with open(summary.audit_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary.found and {r["decision"] for r in rows} == {"kept"}
    assert all(r["box"] and r["split"] in ("train", "test") for r in rows)
    document = json.loads(open(summary.audit_json).read())
    assert document["synthetic"] is True and document["summary"]["kept"] == summary.kept
    with Image.open(summary.contact_sheet) as sheet:
        assert sheet.width > 600 and sheet.height > 200
    assert open(summary.build_log).read().strip().splitlines()[-1].endswith(
        audit.summary_line(document["summary"]))

    builder = tfds.builder("covid_ct/28", data_dir=data_dir)
    ds = builder.as_dataset(split="test")
    examples = list(tfds.as_numpy(ds))
    assert len(examples) == summary.splits["test"]
    for ex in examples:
        assert ex["image"].shape == (28, 28, 1) and ex["image"].dtype == np.uint8
        assert ex["source"] == b"synthetic_phantom"
    assert builder.info.features["label"].names == ["covid", "non_covid"]
    test_names = sorted(ex["file_name"] for ex in examples)

    # A rebuild puts every scan in the same split.
    build_lib.build("28", data_dir, demo=True)
    again = tfds.builder("covid_ct/28", data_dir=data_dir).as_dataset(split="test")
    assert sorted(ex["file_name"] for ex in tfds.as_numpy(again)) == test_names


def test_whole_build_problems_are_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="no manual_dir"):
        build_lib.build("64", str(tmp_path))
    with pytest.raises(DatasetError, match="not one of"):
        build_lib.build("65", str(tmp_path), demo=True)
    with pytest.raises(DatasetError, match="local folder"):
        build_lib.build("64", "gs://bucket/tfds", demo=True)
    with pytest.raises(DatasetError, match="is empty"):
        (tmp_path / "empty").mkdir()
        build_lib.build("64", str(tmp_path / "out"), manual_dir=str(tmp_path / "empty"))
    only_bad = tmp_path / "bad" / "CT_COVID"
    only_bad.mkdir(parents=True)
    (only_bad / "zero.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"no scans left.*empty_file 1"):
        build_lib.build("64", str(tmp_path / "out"), manual_dir=str(tmp_path / "bad"))
