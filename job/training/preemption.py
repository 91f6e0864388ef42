"""What a SIGTERM (a spot reclaim, a drain, `kubectl delete pod`) does to a run.

The signal sets a flag and arms the run's `Deadline` (`job.deadline`) at `grace_seconds` minus a
reserve for the process to exit (GKE gives a spot pod ~15 s in all, a drain the pod's grace
period, then SIGKILL). The loop acts on the flag at the next step boundary, where the state is
whole; every wait of the training thread in between (the previous upload, a metrics or sample
upload, a listing) ends by the deadline, so the signal is followed by exit 143 within
`grace_seconds` whatever the bucket does. Within the budget the loop lets the upload in flight
finish, then makes a fresh checkpoint only if the last measured write + upload says it can be
complete in the run URI in time; otherwise the newest complete checkpoint is what the next start
resumes from (the steps since are trained again). Uploads that cannot finish are abandoned: a
checkpoint folder cut off before its marker is ignored by readers and pruned at the next start.
"""

from __future__ import annotations

import signal
import threading
import time

import tensorflow as tf

from job.checkpoint import CheckpointStore
from job.deadline import Deadline, DeadlinePassed
from job.errors import Preempted, UserError

# Kept back from the grace budget for the exit itself: the lease's release (at most 1 s, in
# `loop.fit`), the message, TensorFlow's and Python's teardown; at most a third of a small budget.
EXIT_RESERVE_SECONDS = 3.0


class SigtermFlag:
    """Turns SIGTERM into a flag (and its arrival time) the loop checks between steps, and arms
    `deadline` so that every wait of the training thread ends within the grace budget."""

    def __init__(self, grace_seconds: float, deadline: Deadline | None = None):
        self.grace_seconds = grace_seconds
        self.deadline = deadline if deadline is not None else Deadline()
        self.raised_at: float | None = None
        self._previous = None

    @property
    def raised(self) -> bool:
        return self.raised_at is not None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._set)
        return self

    def _set(self, signum, frame):
        if self.raised_at is None:
            self.raised_at = time.monotonic()
            reserve = min(EXIT_RESERVE_SECONDS, self.grace_seconds / 3)
            self.deadline.arm(self.grace_seconds - reserve)

    def join(self) -> None:
        """Act on a SIGTERM another worker of the group received (`group.Votes`): this worker
        stops at the same step, within the same grace budget."""
        self._set(signal.SIGTERM, None)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def preempt(store: CheckpointStore, ckpt: tf.train.Checkpoint, epoch: int, step: int,
            flag: SigtermFlag, state: dict) -> Preempted:
    """Checkpoint what the grace budget allows; returns the `Preempted` to raise (exit 143).

    `epoch`, `step`: where the run stands (completed epochs, steps of the next one). Never waits
    past `flag.deadline`; names the newest checkpoint known complete (this process's bookkeeping,
    no listing), so a bucket that stopped answering cannot hold the exit.
    """
    deadline = flag.deadline
    failed = None
    try:
        in_flight_done = store.wait(deadline=deadline)
    except UserError as error:  # that upload is lost; the newest complete checkpoint still stands
        in_flight_done, failed = True, error
    latest = store.newest_complete
    if latest is not None and (latest.epoch, latest.step) == (epoch, step):
        return Preempted(f"SIGTERM: checkpoint {latest.name} (epoch {epoch}, step {step}) is "
                         f"complete in {store.uri}; run the same command to resume")
    estimate = store.seconds_to_save(store.last_size_bytes or 0)
    left = deadline.remaining()
    if failed is not None:
        why = f"the upload in flight failed: {failed}"
    elif not in_flight_done:
        why = "an upload in flight did not finish within the grace budget and was abandoned"
    elif left <= 0:
        why = "the grace budget was spent waiting for the bucket"
    elif estimate is not None and estimate > left:
        why = f"a fresh one needs ~{estimate:.0f} s, more than the {left:.0f} s left"
    else:
        try:
            store.save(ckpt, epoch, step, state, deadline=deadline)
            if store.wait(deadline=deadline):
                return Preempted(f"SIGTERM: saved a checkpoint after {epoch} epochs and {step} "
                                 f"steps in {store.uri}; run the same command to resume")
            why = "its upload did not finish within the grace budget and was abandoned"
        except DeadlinePassed:
            why = "the bucket did not answer within the grace budget"
        except UserError as error:  # a failed upload, a lost lease: the newest complete stands
            why = f"it could not be saved: {error}"
    return Preempted(f"SIGTERM at epoch {epoch}, step {step}: no fresh checkpoint ({why}); "
                     f"the same command resumes from {describe(store.newest_complete)} in "
                     f"{store.uri}")


def finish_upload(store: CheckpointStore, deadline: Deadline) -> None:
    """Wait for the checkpoint upload in flight (a callback such as Ray Tune's must see it
    complete; the run's last one must be) under `deadline`.

    Raises:
        DeadlinePassed: SIGTERM's budget ran out first (the loop turns it into exit 143).
        StorageError: the upload failed beyond its retries (exit 1).
    """
    if not store.wait(deadline=deadline):
        raise DeadlinePassed(f"a checkpoint upload to {store.uri} did not finish in time")


def describe(saved) -> str:
    if saved is None:  # none listed at start-up nor promoted since: the start, or a PBT donor's
        return "its newest complete checkpoint, if any,"
    return f"{saved.name} (epoch {saved.epoch}, step {saved.step})"
