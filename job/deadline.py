"""A bound on every wait of the training thread, set the instant a SIGTERM arrives.

Before the signal a `Deadline` is open: waits last as long as the work they wait for. The signal
handler arms it (`arm(seconds)`); from then on every wait that consults it ends by then, whatever
the bucket does. Work the training thread must not block on (an upload, a listing) runs on a daemon
thread that the caller joins in short slices, so the handler gets to run within one slice and the
process can exit with the thread still stuck in a request: an abandoned upload leaves an object
whole or absent (uploads are atomic) and a checkpoint folder without its marker, which readers
ignore and the next start prunes.

A process that abandoned uploads ends through `exit_abandoning` rather than Python's finalization:
with an upload thread cut off in a request, the interpreter's shutdown sat in the garbage collector
for minutes (gdb: `Py_FinalizeEx` -> `finalize_modules` -> `gc_collect_main`), past any grace budget.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import sys
import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.1  # how soon a wait notices a signal that arrived while it waited
IDLE_SECONDS = 60.0  # a worker with nothing to do for this long ends (a Tune actor runs many fits)


class DeadlinePassed(Exception):
    """A wait on the training thread outlived the SIGTERM's grace budget; what it waited for is
    abandoned. The loop turns it into `Preempted` (exit 143) naming the newest complete checkpoint."""


class Deadline:
    """Open until `arm(seconds)`; then `remaining()` counts down to 0 (seconds, monotonic clock)."""

    def __init__(self):
        self.at: float | None = None
        self._calls: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def arm(self, seconds: float) -> None:
        """Bound every later (and every current) wait to `seconds` from now; a second call keeps
        the first bound (a second SIGTERM does not extend the budget)."""
        if self.at is None:
            self.at = time.monotonic() + seconds

    @property
    def armed(self) -> bool:
        return self.at is not None

    def remaining(self) -> float:
        """Seconds left: `inf` while open, then down to 0."""
        return math.inf if self.at is None else max(self.at - time.monotonic(), 0.0)

    def join(self, thread: threading.Thread, timeout: float | None = None) -> bool:
        """Wait for `thread` until it ends (True), or until the deadline or `timeout` s pass (False)."""
        until = math.inf if timeout is None else time.monotonic() + timeout
        while thread.is_alive():
            left = min(self.remaining(), until - time.monotonic())
            if left <= 0:
                return False
            thread.join(min(left, POLL_SECONDS))
        return True

    def call(self, fn: Callable[..., T], *args) -> T:
        """`fn(*args)` on this deadline's worker thread, waited for under the deadline.

        One daemon worker runs the calls in order (so a bucket client, kept per thread by
        `job.storage`, is made once and reused); it ends after `IDLE_SECONDS` without work.
        Returns what `fn` returns; re-raises what it raises.

        Raises:
            DeadlinePassed: the deadline passed first; `fn` is abandoned and may still finish.
        """
        if self.remaining() <= 0:
            raise DeadlinePassed(f"no time left for {getattr(fn, '__name__', fn)}")
        done, result = threading.Event(), {}
        with self._lock:
            self._calls.put((fn, args, done, result))
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, daemon=True, name="storage-calls")
                self._worker.start()
        while not done.wait(min(self.remaining(), POLL_SECONDS)):
            if self.remaining() <= 0:
                raise DeadlinePassed(f"{getattr(fn, '__name__', fn)} did not finish within the "
                                     "grace budget")
        if "error" in result:
            raise result["error"]
        return result["value"]

    def _serve(self) -> None:
        while True:
            try:
                fn, args, done, result = self._calls.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:  # `call` puts and checks the worker under the same lock
                    if self._calls.empty():
                        self._worker = None
                        return
                continue
            try:
                result["value"] = fn(*args)
            except BaseException as error:  # handed to the waiting caller
                result["error"] = error
            done.set()


def exit_abandoning(exit_code: int) -> None:
    """End the process now with `exit_code`, abandoning every other thread (uploads cut off by a
    SIGTERM's deadline); what was printed or logged is flushed first. Only a process's entry point
    calls it (`covidct`'s main), after the run has said where it stands."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(exit_code)
