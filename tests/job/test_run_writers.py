"""One writer per run URI, with real `covidct train` processes on one run folder and on the GCS
emulator: a second writer on a live run (paused with SIGSTOP, so the test never races it) waits,
then exits 1 naming the holder and touching nothing; a writer SIGKILLed while the fault proxy
holds its checkpoint's marker upload leaves its lease behind, and `--takeover` continues the run.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from job import run, storage
from tests.fault_proxy import FaultProxy

pytestmark = pytest.mark.heavy


def train(run_uri, demo_data, *extra: str, epochs: int, env=None) -> subprocess.Popen:
    command = [sys.executable, "-m", "job", "train", "--preset", "smoke", "--run", str(run_uri),
               "--cpu-replicas", "2", "--set", f"data_dir={demo_data}", "--set", f"epochs={epochs}",
               # metrics and samples at the last epoch only: these tests are about who writes
               "--set", "metrics_every_epochs=10", "--set", "sample_every_epochs=10", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})


def finish(proc: subprocess.Popen, expected: int) -> tuple[str, str]:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == expected, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return out, err


def wait_until(condition, writer: subprocess.Popen, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert writer.poll() is None, writer.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the writer never got there"
        time.sleep(0.2)


def holds_a_checkpoint(run_uri: str) -> bool:
    return storage.exists(storage.join(run_uri, run.LEASE)) and bool(run.read_listing(run_uri).checkpoints)


def test_a_second_train_on_a_live_run_exits_1_naming_the_writer_and_the_run_stays_whole(
        demo_data, tmp_path):
    folder = str(tmp_path / "run")
    # A term longer than the test: a writer paused past its term is rightly taken for dead.
    first = train(folder, demo_data, "--set", "lease_seconds=900", epochs=3)
    wait_until(lambda: holds_a_checkpoint(folder), first)
    first.send_signal(signal.SIGSTOP)  # a live writer, paused (not dead) while the second starts
    try:
        second = train(folder, demo_data, "--set", "lease_wait_seconds=1", epochs=3)
        out, err = finish(second, expected=1)
    finally:
        first.send_signal(signal.SIGCONT)
    assert len(err.strip().splitlines()) == 1, err
    assert f":{first.pid}:" in err and "--takeover" in err, err
    assert "pruned" not in out and "resumed" not in out

    finish(first, expected=0)
    assert [m["epoch"] for m in run.read_metrics(folder)] == [1, 2, 3]
    listing = run.read_listing(folder)
    assert listing.incomplete == () and all(s.revision == 0 for s in listing.checkpoints)
    assert not storage.exists(storage.join(folder, run.LEASE))  # released at the end


def test_takeover_after_the_writer_is_killed_continues_the_run_in_a_bucket(
        demo_data, gcs_emulator, gcs_prefix):
    with FaultProxy(gcs_emulator.endpoint) as proxy:
        proxy.hold(r"e000002-s00000/COMPLETE")  # the writer stalls on its second marker...
        first = train(gcs_prefix, demo_data, epochs=3, env={"STORAGE_EMULATOR_HOST": proxy.endpoint})
        wait_until(lambda: proxy.holding, first)
        first.kill()  # ...and dies there, its lease unreleased
        first.wait()
    assert storage.exists(storage.join(gcs_prefix, run.LEASE))

    second = train(gcs_prefix, demo_data, "--takeover", "--set", "lease_wait_seconds=0", epochs=3)
    out, _ = finish(second, expected=0)
    assert f"taking over {storage.join(gcs_prefix, run.LEASE)}" in out and f":{first.pid}:" in out
    assert "pruned 1 incomplete checkpoint" in out and "resumed from" in out
    assert [m["epoch"] for m in run.read_metrics(gcs_prefix)] == [1, 2, 3]
    assert not storage.exists(storage.join(gcs_prefix, run.LEASE))
