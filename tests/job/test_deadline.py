"""The deadline every wait of the training thread consults after a SIGTERM (real threads, no TF)."""

import threading
import time

import pytest

from job.deadline import Deadline, DeadlinePassed


def test_an_open_deadline_waits_for_the_work_and_hands_back_its_result_or_error():
    deadline = Deadline()
    assert deadline.remaining() == float("inf")
    assert deadline.call(lambda: (time.sleep(0.3), 42)[1]) == 42
    with pytest.raises(KeyError, match="gone"):
        deadline.call(lambda: {}["gone"])
    # One worker serves the calls in order: a bucket client kept per thread is made once.
    assert deadline.call(threading.get_ident) == deadline.call(threading.get_ident)


def test_an_armed_deadline_abandons_a_stalled_call_and_a_stalled_thread_in_time():
    deadline, release = Deadline(), threading.Event()
    armer = threading.Timer(0.3, deadline.arm, args=(0.5,))  # the "signal" comes mid-wait
    armer.start()
    t0 = time.monotonic()
    with pytest.raises(DeadlinePassed):
        deadline.call(release.wait)  # stalls until released: an upload with a dead bucket
    assert 0.7 <= time.monotonic() - t0 < 1.5
    with pytest.raises(DeadlinePassed):  # no time left: refused at once
        deadline.call(lambda: None)
    stalled = threading.Thread(target=release.wait, daemon=True)
    stalled.start()
    t0 = time.monotonic()
    assert not deadline.join(stalled) and time.monotonic() - t0 < 0.2
    deadline.arm(60)  # a second signal does not extend the budget
    assert deadline.remaining() == 0
    release.set()
    stalled.join(5)
    assert deadline.join(stalled)  # a thread that ended counts as done whatever the deadline
