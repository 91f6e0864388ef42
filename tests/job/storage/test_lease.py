"""One writer per run URI: the lease (`job.storage.lease`), on a local folder and on the GCS
emulator, held by a real other process that is then SIGKILLed.

The emulator ignores GCS preconditions (`if_generation_match` is accepted and not enforced, checked
on gcp-storage-emulator 2026.7.19): what it can show is the protocol's read-back and renewal
checks; the preconditions themselves hold on GCS only.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from job import run
from job.storage import Lease, LeaseHeld, LeaseLost

HOLD = """
import sys, time
from job.storage import Lease
lease = Lease(sys.argv[1], sys.argv[2], float(sys.argv[3])).acquire(0)
print(lease.owner, flush=True)
time.sleep(600)
"""


@pytest.fixture(params=["local", "gcs"])
def place(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "run")
    return request.getfixturevalue("gcs_prefix")


def hold(place: str, seconds: float) -> tuple[subprocess.Popen, str]:
    """A real other process that takes the lease, says its owner id and keeps renewing."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, place, run.LEASE, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    owner = proc.stdout.readline().strip()
    assert owner, proc.stderr.read()
    return proc, owner


def test_a_second_writer_waits_then_fails_naming_the_holder_and_takes_over_once_it_is_killed(place):
    proc, owner = hold(place, seconds=1.5)
    try:
        second = Lease(place, run.LEASE, seconds=1.5)
        t0 = time.monotonic()
        with pytest.raises(LeaseHeld) as refused:  # waits longer than the term: renewals keep it
            second.acquire(wait_seconds=2.0)
        assert 2.0 <= time.monotonic() - t0 < 6
        assert owner in str(refused.value) and "--takeover" in str(refused.value)
        assert refused.value.exit_code == 1 and "\n" not in str(refused.value)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    t0 = time.monotonic()
    second.acquire(wait_seconds=10)  # the dead holder's lease expires within its term
    assert time.monotonic() - t0 < 4
    second.check()
    second.release()
    Lease(place, run.LEASE, seconds=5).acquire(wait_seconds=0).release()  # released: free at once


def test_takeover_takes_a_live_lease_and_its_old_holder_finds_out_at_its_next_renewal(place):
    first = Lease(place, run.LEASE, seconds=0.9).acquire(0)
    second = Lease(place, run.LEASE, seconds=30).acquire(0, takeover=True)
    try:
        time.sleep(1.0)  # the first one's renewal (every 0.3 s) reads the new owner
        with pytest.raises(LeaseLost, match=second.owner):
            first.check()
        second.check()
    finally:
        first.release()
        second.release()
