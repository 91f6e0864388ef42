"""What a SIGTERM (a spot reclaim, a drain, `kubectl delete pod`) does to a run.

The signal only sets a flag; the loop acts on it at the next step boundary, where the state is
whole. Within the grace budget (`TrainConfig.grace_seconds`; GKE gives a spot pod ~15 s in
all) the loop first lets the upload in flight finish, then makes a fresh checkpoint only if the
last measured write + upload says it can be complete in the run URI in time; otherwise the newest
checkpoint already there is what the next start resumes from (the steps since are trained again).
A fresh checkpoint cut off by the kill is a folder without COMPLETE, pruned at the next start.
"""

from __future__ import annotations

import signal
import threading
import time

import tensorflow as tf

from job.checkpoint import CheckpointStore
from job.errors import Preempted


class SigtermFlag:
    """Turns SIGTERM into a flag (and its arrival time) the loop checks between steps."""

    def __init__(self):
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

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def preempt(store: CheckpointStore, ckpt: tf.train.Checkpoint, epoch: int, step: int,
            grace_seconds: float, flag: SigtermFlag, state: dict) -> Preempted:
    """Checkpoint what the grace budget allows; returns the `Preempted` to raise (exit 143).

    `epoch`, `step`: where the run stands (completed epochs, steps of the next one).
    """
    def left() -> float:
        return grace_seconds - (time.monotonic() - flag.raised_at)

    in_flight_done = store.wait(timeout=max(left(), 0.0))
    latest = store.latest()
    if latest is not None and (latest.epoch, latest.step) == (epoch, step):
        return Preempted(f"SIGTERM: checkpoint {latest.name} (epoch {epoch}, step {step}) is "
                         f"complete in {store.uri}; run the same command to resume")
    estimate = store.seconds_to_save(store.last_size_bytes or 0)
    if in_flight_done and (estimate is None or estimate <= left()):
        store.save(ckpt, epoch, step, state)
        if store.wait(timeout=max(left(), 0.0)):
            return Preempted(f"SIGTERM: saved a checkpoint after {epoch} epochs and {step} steps "
                             f"in {store.uri}; run the same command to resume")
    fallback = store.latest()
    where = (f"{fallback.name} (epoch {fallback.epoch}, step {fallback.step})" if fallback
             else "the start (no checkpoint yet)")
    why = ("its upload did not finish in time" if in_flight_done else "an upload was still running")
    if in_flight_done and estimate is not None and estimate > left():
        why = f"a fresh one needs ~{estimate:.0f} s, more than the grace budget left"
    return Preempted(f"SIGTERM at epoch {epoch}, step {step}: no fresh checkpoint ({why}); "
                     f"the same command resumes from {where} in {store.uri}")
