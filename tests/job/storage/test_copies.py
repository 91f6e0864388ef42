"""`storage.local_copy`, `staged_output` and `Mirror`: local copies that follow their source.

A long-lived machine (a Ray worker, a pod that restarts) must never train on yesterday's copy of
a bucket's dataset, nor trust a weights file whose download was killed half-way.
"""

import logging
import os
import subprocess
import sys
import time

import pytest

from job import storage
from job.config import resolve
from job.prepare import prepare
from job.training.data import load_images
from job.training.loop import fit
from tests.fault_proxy import FaultProxy


def test_a_local_path_is_its_own_copy_and_a_missing_one_is_not_found(tmp_path):
    (tmp_path / "w.h5").write_bytes(b"weights")
    assert storage.local_copy(str(tmp_path / "w.h5")) == tmp_path / "w.h5"
    with pytest.raises(storage.NotFound, match="no such file or folder"):
        storage.local_copy(str(tmp_path / "missing"))


def test_a_bucket_folder_is_fetched_again_when_it_changes(gcs_prefix):
    storage.write_bytes(storage.join(gcs_prefix, "a.txt"), b"first build")
    first = storage.local_copy(gcs_prefix)
    assert (first / "a.txt").read_bytes() == b"first build"
    assert storage.local_copy(gcs_prefix) == first  # unchanged: reused, not downloaded again
    storage.write_bytes(storage.join(gcs_prefix, "a.txt"), b"rebuilt!!!!")  # same size, new bytes
    storage.write_bytes(storage.join(gcs_prefix, "b/c.txt"), b"new file")
    second = storage.local_copy(gcs_prefix)
    assert second != first and not first.exists()  # the stale version is gone
    assert (second / "a.txt").read_bytes() == b"rebuilt!!!!"
    assert (second / "b" / "c.txt").read_bytes() == b"new file"


def test_two_bucket_files_with_the_same_name_do_not_collide(gcs_prefix):
    one, two = storage.join(gcs_prefix, "x", "w.h5"), storage.join(gcs_prefix, "y", "w.h5")
    storage.write_bytes(one, b"one")
    storage.write_bytes(two, b"two")
    assert storage.local_copy(one).read_bytes() == b"one"
    assert storage.local_copy(two).read_bytes() == b"two"
    with pytest.raises(storage.NotFound, match="no object or folder"):
        storage.local_copy(storage.join(gcs_prefix, "nothing-here"))


def test_a_download_killed_half_way_is_fetched_again(gcs_emulator, gcs_prefix):
    uri = storage.join(gcs_prefix, "inception.weights.h5")
    payload = os.urandom(3_000_000)
    storage.write_bytes(uri, payload)
    with FaultProxy(gcs_emulator.endpoint) as proxy:
        proxy.stall_media(after_bytes=1_000_000)
        env = {**os.environ, "STORAGE_EMULATOR_HOST": proxy.endpoint}
        code = f"from job import storage; storage.local_copy({uri!r})"
        proc = subprocess.Popen([sys.executable, "-c", code], env=env)
        deadline = time.time() + 60
        while not any("alt=media" in path for _, path in proxy.requests):
            assert proc.poll() is None and time.time() < deadline, "the download never started"
            time.sleep(0.05)
        time.sleep(1.0)  # a megabyte has arrived; the rest never will
        proc.kill()
        proc.wait()
    # The next run (this process, straight to the emulator) gets the whole file, not the half.
    assert storage.local_copy(uri).read_bytes() == payload


def test_staged_output_uploads_when_the_block_ends_and_not_on_error(gcs_prefix, tmp_path):
    with storage.staged_output(storage.join(gcs_prefix, "out")) as folder:
        (folder / "report.md").write_text("# report")
    assert storage.list_files(storage.join(gcs_prefix, "out")) == ["report.md"]
    with pytest.raises(RuntimeError):
        with storage.staged_output(storage.join(gcs_prefix, "failed")) as folder:
            (folder / "half.md").write_text("half")
            raise RuntimeError("the work failed")
    assert storage.list_files(storage.join(gcs_prefix, "failed")) == []
    with storage.staged_output(str(tmp_path / "local")) as folder:
        assert folder == tmp_path / "local"


def test_a_mirror_pushes_to_and_pulls_from_its_bucket(gcs_prefix):
    mirror = storage.Mirror(gcs_prefix)
    mirror.path("d").mkdir()
    mirror.path("d/f.bin").write_bytes(b"payload")
    mirror.push("d")
    assert storage.read_bytes(storage.join(gcs_prefix, "d/f.bin")) == b"payload"
    mirror.delete("d")
    assert not mirror.path("d").exists() and storage.list_files(gcs_prefix) == []
    storage.write_bytes(storage.join(gcs_prefix, "m.jsonl"), b"{}\n")
    mirror.pull("m.jsonl")
    assert mirror.path("m.jsonl").read_bytes() == b"{}\n"


@pytest.mark.heavy
def test_a_rebuilt_bucket_dataset_is_what_the_next_run_trains_on(gcs_prefix, tmp_path, caplog):
    sample = os.environ.get("COVIDCT_SAMPLE_DIR")
    if not sample or not os.path.isdir(sample):
        pytest.skip("COVIDCT_SAMPLE_DIR (the real COVID-CT sample, set by .ci/run) is absent")
    demo = prepare("28", gcs_prefix, demo=True)[0]
    config = resolve("smoke", extra={"data_dir": gcs_prefix, "run_uri": str(tmp_path / "run1")})
    assert load_images(config)[1] == demo.splits["train"]
    real = prepare("28", gcs_prefix, manual_dir=sample)[0]  # the same bucket, rebuilt
    assert not real.synthetic and real.splits["train"] != demo.splits["train"]
    second = resolve("smoke", sets=["epochs=1"],
                     extra={"data_dir": gcs_prefix, "run_uri": str(tmp_path / "run2")})
    with caplog.at_level(logging.INFO, logger="covidct"):
        fit(second)
    assert f"plan: {real.splits['train']} training images" in caplog.text
