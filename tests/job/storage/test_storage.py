"""job.storage on a local folder and on a real GCS emulator: both places must behave the same.

No mocks: the gs:// cases talk HTTP to `gcp-storage-emulator` (tests/gcs_fixture.py); the outage
tests stop that process and start it again on the same port.
"""

import os
import threading
import time
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs

from job import storage
from job.storage import StorageError
from tests.gcs_fixture import free_port

# A folder tree shaped like a run's (storage knows nothing of the run layout: job/run.py does).
RUN_FOLDER = {
    "settings.json": b'{"epochs": 2}',
    "shards/part-1.index": b"index",
    "shards/part-1.data-00000-of-00001": os.urandom(300_000),
    "pictures/grids/grid_0001.png": b"\x89PNG fake",
}


@pytest.fixture(params=["local", "gs"])
def place(request, tmp_path):
    """The same test on a local folder and on a fresh gs:// prefix in the emulator."""
    if request.param == "local":
        return str(tmp_path / "place")
    return request.getfixturevalue("gcs_prefix")


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _versions(place: str) -> dict[str, int]:
    """Something that changes whenever a file is rewritten: the inode, or the object generation."""
    if not place.startswith("gs://"):
        return {rel: (Path(place) / rel).stat().st_ino for rel in storage.list_files(place)}
    bucket, _, prefix = place[len("gs://") :].partition("/")
    client = gcs.Client(project="test", credentials=AnonymousCredentials())
    blobs = client.list_blobs(bucket, prefix=prefix + "/")
    return {blob.name[len(prefix) + 1 :]: blob.generation for blob in blobs}


def test_join_and_absolute():
    assert storage.join("gs://b/run/", "shards", "part-1/") == "gs://b/run/shards/part-1"
    assert storage.join("gs://b", "x") == "gs://b/x"
    assert storage.join("runs/a", "b", "c.txt") == os.path.join("runs/a", "b", "c.txt")
    assert storage.absolute("gs://b/x") == "gs://b/x"
    assert storage.absolute("runs/gs:/x") == os.path.abspath("runs/gs:/x")
    with pytest.raises(StorageError, match="unsupported scheme"):
        storage.read_bytes("s3://b/x")


def test_bytes_round_trip(place):
    uri = storage.join(place, "nested", "blob.bin")
    data = bytes(range(256)) * 64
    storage.write_bytes(uri, data)
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == data
    storage.write_bytes(uri, b"overwritten")
    assert storage.read_bytes(uri) == b"overwritten"
    assert storage.list_files(place) == ["nested/blob.bin"]


def test_missing_object_is_a_storage_error(place):
    uri = storage.join(place, "not-there.txt")
    assert not storage.exists(uri)
    with pytest.raises(StorageError, match=r"cannot read .*not-there\.txt: no such (file|object)"):
        storage.read_bytes(uri)


def test_directory_round_trip_and_listing(place, tmp_path):
    source = _write_tree(tmp_path / "run", RUN_FOLDER)
    storage.upload_dir(str(source), place)
    # A sibling whose name starts with the same characters is not "under" the prefix.
    storage.write_bytes(place + "-sibling/other.txt", b"not mine")

    assert storage.list_files(place) == sorted(RUN_FOLDER)
    assert storage.list_files(storage.join(place, "shards")) == [
        "part-1.data-00000-of-00001",
        "part-1.index",
    ]
    assert storage.list_files(storage.join(place, "pictures")) == ["grids/grid_0001.png"]
    assert storage.list_files(storage.join(place, "nothing")) == []

    storage.download_dir(place, str(tmp_path / "back"))
    back = tmp_path / "back"
    assert {rel: (back / rel).read_bytes() for rel in storage.list_files(str(back))} == RUN_FOLDER


def test_repeated_upload_sends_only_changed_files(place, tmp_path):
    source = _write_tree(tmp_path / "run", RUN_FOLDER)
    storage.upload_dir(str(source), place)
    before = _versions(place)

    (source / "settings.json").write_bytes(b'{"epochs": 3}')
    (source / "shards" / "part-2.index").write_bytes(b"index 2")
    storage.upload_dir(str(source), place)
    after = _versions(place)

    changed = {rel for rel in before if after[rel] != before[rel]}
    assert changed == {"settings.json"}
    assert set(after) - set(before) == {"shards/part-2.index"}
    assert storage.read_bytes(storage.join(place, "settings.json")) == b'{"epochs": 3}'


def test_delete_removes_everything_below_the_prefix_only(place):
    for rel in ["ckpt-1/a", "ckpt-1/deeper/b", "ckpt-10/c"]:
        storage.write_bytes(storage.join(place, rel), rel.encode())
    storage.delete(storage.join(place, "ckpt-1"))
    assert storage.list_files(place) == ["ckpt-10/c"]
    storage.delete(storage.join(place, "ckpt-1"))  # already gone: nothing to do, no error
    storage.delete(storage.join(place, "ckpt-10", "c"))
    assert storage.list_files(place) == []


def test_download_of_an_empty_prefix_fails(place, tmp_path):
    with pytest.raises(StorageError, match="there are no files under it"):
        storage.download_dir(storage.join(place, "no-run"), str(tmp_path / "out"))


def test_check_reachable_accepts_a_usable_place(place):
    storage.check_reachable(place)
    if not place.startswith("gs://"):
        assert Path(place).is_dir() and os.listdir(place) == []


def test_check_reachable_rejects_an_unwritable_local_folder(tmp_path):
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(StorageError, match="cannot write to .*a-file/run"):
        storage.check_reachable(str(tmp_path / "a-file" / "run"))


def test_local_listing_ignores_partial_writes_of_a_killed_writer(tmp_path):
    storage.write_bytes(str(tmp_path / "done.txt"), b"done")
    (tmp_path / ".half.txt.0123abcd.partial").write_bytes(b"ha")
    assert storage.list_files(str(tmp_path)) == ["done.txt"]


def test_missing_bucket_fails_fast(gcs_emulator):
    uri = "gs://no-such-bucket/run"
    started = time.monotonic()
    with pytest.raises(StorageError, match="cannot reach gs://no-such-bucket/run: bucket 'no-such"):
        storage.check_reachable(uri)
    with pytest.raises(StorageError, match="cannot write .*bucket 'no-such-bucket' does not exist"):
        storage.write_bytes(storage.join(uri, "x"), b"x")
    with pytest.raises(StorageError, match="cannot read .*bucket 'no-such-bucket' does not exist"):
        storage.read_bytes(storage.join(uri, "x"))
    assert time.monotonic() - started < 5


def test_unreachable_endpoint_fails_fast(monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    uri = "gs://covidct-test/run"
    started = time.monotonic()
    with pytest.raises(StorageError, match=f"cannot reach {uri}: no answer from {endpoint}"):
        storage.check_reachable(uri)
    assert time.monotonic() - started < 3


def test_upload_gives_up_after_retry_seconds(gcs_emulator, gcs_prefix, tmp_path):
    source = _write_tree(tmp_path / "run", {"a.txt": b"a"})
    gcs_emulator.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match="no answer from .*still failing after retries"):
            storage.upload_dir(str(source), gcs_prefix, retry_seconds=2)
        assert time.monotonic() - started < 10
    finally:
        gcs_emulator.start()


def test_writes_survive_an_outage(gcs_emulator, gcs_prefix, tmp_path):
    """A folder upload and a single write, both started while the emulator is down, complete."""
    storage.write_bytes(storage.join(gcs_prefix, "before.txt"), b"written before the outage")
    source = _write_tree(tmp_path / "run", RUN_FOLDER)
    marker = storage.join(gcs_prefix, "marker", "DONE")
    outcome = {}

    def run(name, write):
        try:
            write()
            outcome[name] = time.monotonic()
        except Exception as error:  # reported by the assertion below, not lost in the thread
            outcome[name] = error

    writes = {
        "upload_dir": lambda: storage.upload_dir(str(source), gcs_prefix, retry_seconds=60),
        "write_bytes": lambda: storage.write_bytes(marker, b"done", retry_seconds=60),
    }
    gcs_emulator.stop()
    try:
        threads = [threading.Thread(target=run, args=item, daemon=True) for item in writes.items()]
        for thread in threads:
            thread.start()
        time.sleep(3)
        assert all(thread.is_alive() for thread in threads) and not outcome, "should be retrying"
        restarted = time.monotonic()
        gcs_emulator.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        gcs_emulator.start()

    for name in writes:
        assert isinstance(outcome.get(name), float), f"{name}: {outcome.get(name)!r}"
        assert outcome[name] - restarted < 15
    assert storage.list_files(gcs_prefix) == sorted([*RUN_FOLDER, "before.txt", "marker/DONE"])
    for rel, data in RUN_FOLDER.items():
        assert storage.read_bytes(storage.join(gcs_prefix, rel)) == data
    assert storage.read_bytes(marker) == b"done"
    # The emulator keeps its data on disk, so what was there before the outage still is.
    before = storage.read_bytes(storage.join(gcs_prefix, "before.txt"))
    assert before == b"written before the outage"


def test_pyarrow_filesystem_writes_where_storage_reads(place):
    filesystem, path = storage.pyarrow_filesystem(place)
    if filesystem is None:
        assert os.path.isabs(path) and not place.startswith("gs://")
        Path(path, "trial").mkdir(parents=True)
        Path(path, "trial", "result.json").write_bytes(b'{"swd": 0.1}')
    else:
        assert path == place[len("gs://") :]
        with filesystem.open_output_stream(f"{path}/trial/result.json") as out:
            out.write(b'{"swd": 0.1}')
        storage.write_bytes(storage.join(place, "from-storage.txt"), b"hello arrow")
        with filesystem.open_input_stream(f"{path}/from-storage.txt") as source:
            assert source.read() == b"hello arrow"
    assert storage.read_bytes(storage.join(place, "trial", "result.json")) == b'{"swd": 0.1}'
