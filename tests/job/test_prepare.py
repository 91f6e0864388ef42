"""`covidct prepare` into a folder and into a bucket, and --if-missing for pod start-up."""

import os
import shutil
import subprocess
import sys

import pytest

from job import storage
from job.config import resolve
from job.errors import UserError
from job.prepare import PREPARED, is_prepared, prepare
from job.training.data import load_images

pytestmark = pytest.mark.heavy


def test_prepare_into_a_bucket_then_train_data_loads_from_it(gcs_prefix):
    summaries = prepare("28", gcs_prefix, demo=True)
    assert summaries[0].synthetic and summaries[0].kept > 0
    files = storage.list_files(gcs_prefix)
    assert f"covid_ct/28/{PREPARED}" in files
    assert any(f.endswith("dataset_info.json") for f in files)
    images, count = load_images(resolve("smoke", extra={"data_dir": gcs_prefix}))
    assert count == summaries[0].splits["train"]
    assert next(iter(images))["image"].shape == (28, 28, 1)


def test_if_missing_skips_a_complete_build_but_not_a_partial_one(tmp_path):
    data_dir = str(tmp_path)
    assert not is_prepared("28", data_dir)
    prepare("28", data_dir, demo=True)
    assert is_prepared("28", data_dir)
    assert prepare("28", data_dir, demo=True, if_missing=True) == []
    (tmp_path / "covid_ct" / "28" / PREPARED).unlink()  # as if the upload was cut short
    assert len(prepare("28", data_dir, demo=True, if_missing=True)) == 1


def test_if_missing_on_a_prepared_read_only_folder_is_nothing_to_do(demo_data):
    """A prepared dataset mounted read-only (as a dataset volume is): `covidct prepare --if-missing`
    exits 0 with "nothing to do" and never probes for a write. The folder is made read-only for
    real, by a read-only bind mount in a private mount namespace of its own (`unshare`; root
    ignores chmod), so no other test sees it."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) here: a real read-only mount needs it")
    script = ('mount --bind "$D" "$D" && mount -o remount,ro,bind "$D" || exit 96; '
              'touch "$D/.probe" 2>/dev/null && exit 97; '
              'exec "$PY" -m job prepare --demo --config 28 --data-dir "$D" --if-missing')
    flags = ["--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    done = subprocess.run(["unshare", *flags, "sh", "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "D": demo_data, "PY": sys.executable})
    if done.returncode == 96 or "unshare failed" in done.stderr:
        pytest.skip(f"a read-only bind mount is not permitted here: {done.stderr.strip()[-300:]}")
    assert done.returncode != 97, "the bind mount did not make the folder read-only"
    assert done.returncode == 0, done.stderr[-2000:]
    assert "nothing to do" in done.stderr + done.stdout


def test_prepare_refuses_bad_arguments_clearly(tmp_path):
    with pytest.raises(UserError, match="--config '100'"):
        prepare("100", str(tmp_path), demo=True)
    with pytest.raises(UserError, match="--manual-dir"):
        prepare("28", str(tmp_path))
    with pytest.raises(UserError):
        prepare("28", str(tmp_path), manual_dir=str(tmp_path / "missing"))


def test_if_missing_rebuilds_demo_phantoms_when_real_scans_are_asked_for(tmp_path):
    import os

    from job import dataset_record

    sample = os.environ.get("COVIDCT_SAMPLE_DIR")
    if not sample or not os.path.isdir(sample):
        pytest.skip("COVIDCT_SAMPLE_DIR (the real COVID-CT sample, set by .ci/run) is absent")
    data_dir = str(tmp_path)
    prepare("28", data_dir, demo=True)
    assert dataset_record.read(data_dir, "28")["source"] == dataset_record.DEMO
    (rebuilt,) = prepare("28", data_dir, manual_dir=sample, if_missing=True)
    assert not rebuilt.synthetic
    assert dataset_record.read(data_dir, "28")["source"] == dataset_record.REAL
    assert prepare("28", data_dir, manual_dir=sample, if_missing=True) == []  # same scans: kept


def test_training_refuses_demo_phantoms_unless_the_config_asks(demo_data):
    from job.errors import ConfigError

    with pytest.raises(ConfigError, match="DEMO PHANTOMS"):
        load_images(resolve("seed28", extra={"data_dir": demo_data}))
    assert load_images(resolve("smoke", extra={"data_dir": demo_data}))[1] > 0
