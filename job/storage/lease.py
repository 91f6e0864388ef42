"""One writer per place: a lease object holding an owner id and an expiry.

A run URI has one writer (`covidct train`, a sweep trial); a second process on the same URI - a
replacement pod while the old one still terminates, a rescheduled Ray trial, a user's second
`covidct train` - would prune the first one's in-flight checkpoint and write metrics beside it.
The writer holds a lease: the object `<place>/LEASE` (the name is `job.run.LEASE`) with
{"owner", "expires", "seconds"}, renewed by a background thread every third of its term. Another
process takes it only when it is absent, when its expiry has passed (a writer killed without a
release), or when told to (`--takeover`: a human who knows the old writer is dead).

- In a bucket every change is conditional on the object's generation, so two takers cannot both
  win; locally the lease file is created with O_EXCL and changed under an flock
  (`job.storage.lease_records`). The GCS emulator the tests use ignores the preconditions: every
  change is also read back, and a renewal first checks that the owner is still this process, so
  a lost lease is noticed at the next renewal at the latest.

Expiry is wall-clock time (seconds since the epoch): writers on different machines need clocks
within a few seconds of each other (NTP, as on GKE nodes). The holder that cannot renew for a
whole term (a storage outage), or finds another owner, has lost the lease: `check()` raises
`LeaseLost` and the writer stops before it promotes or prunes anything.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid

from job.errors import UserError
from job.storage.buckets import StorageError
from job.storage.files import is_remote, join
from job.storage.lease_records import BucketRecord, LocalRecord

log = logging.getLogger("covidct")
POLL_SECONDS = 1.0  # a waiting writer reads the lease this often
RELEASE_SECONDS = 3.0  # the most a release may take (then the lease expires on its own)


class LeaseHeld(UserError):
    """Another live writer holds the place's lease (exit 1: it may finish, then a retry works)."""


class LeaseLost(UserError):
    """This writer's lease expired or was taken over: it must stop writing (exit 1)."""


def new_owner() -> str:
    """This process's owner id: host, pid and a random part (a pid is reused across pods)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%H:%M:%S UTC")


class Lease:
    """The lease `<place>/<name>` for one writer.

    Args:
        place: the run URI (a local folder or gs://BUCKET/PREFIX).
        name: the lease object's name inside it (`job.run.LEASE`).
        seconds: the term; renewed every `seconds / 3`, taken by another writer once `seconds`
            pass without a renewal.
    """

    def __init__(self, place: str, name: str, seconds: float, owner: str | None = None):
        if seconds <= 0:
            raise ValueError(f"a lease term must be positive, got {seconds}")
        self.uri = join(place, name)
        self.seconds = seconds
        self.owner = owner or new_owner()
        self._store = BucketRecord(self.uri) if is_remote(place) else LocalRecord(self.uri)
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- the writer's side ------------------------------------------------------------------------

    def acquire(self, wait_seconds: float, takeover: bool = False) -> "Lease":
        """Take the lease, waiting up to `wait_seconds` for a live holder to release it.

        Raises:
            LeaseHeld (exit 1): another live writer still holds it; the message names it.
            StorageError: the place cannot be read or written.
        """
        deadline, told = time.monotonic() + wait_seconds, False
        while True:
            holder = self._try_take(takeover)
            if holder is None:
                self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                                 name=f"lease-{self.uri}")
                self._renewer.start()
                return self
            left = deadline - time.monotonic()
            if left <= 0:
                raise LeaseHeld(
                    f"{self.uri}: another writer, {holder.get('owner')}, holds this run's lease "
                    f"until {_utc(float(holder.get('expires', 0)))} (waited {wait_seconds:.0f} s); "
                    "run again once it has finished, or if it is dead (its pod or process gone) "
                    "wait for the lease to expire or rerun with --takeover")
            if not told:
                log.info(f"waiting up to {wait_seconds:.0f} s for {holder.get('owner')}, which "
                         f"holds {self.uri}")
                told = True
            time.sleep(min(POLL_SECONDS, left))

    def check(self) -> None:
        """Raise `LeaseLost` if this writer no longer holds the lease (call before each write that
        must have one writer: promotion, pruning)."""
        if self._lost is not None:
            raise LeaseLost(self._lost)
        if self._renewer is None:
            raise LeaseLost(f"{self.uri}: this process never took the lease")

    def release(self, seconds: float = RELEASE_SECONDS) -> None:
        """Stop renewing and delete the lease if it is still this writer's, spending at most
        `seconds` (a SIGTERM's grace budget is short; an unreleased lease expires on its own)."""
        self._stop.set()
        renewer, self._renewer = self._renewer, None
        if renewer is None:
            return
        until = time.monotonic() + seconds
        renewer.join(max(until - time.monotonic(), 0.0))
        if self._lost is not None or renewer.is_alive():
            return
        releaser = threading.Thread(target=self._delete, daemon=True, name=f"release-{self.uri}")
        releaser.start()
        releaser.join(max(until - time.monotonic(), 0.0))

    def _delete(self) -> None:
        try:
            self._store.delete_if(self.owner)
        except StorageError as error:
            log.info(f"could not release {self.uri} ({error}); it expires in {self.seconds:.0f} s")

    # -- inside --------------------------------------------------------------------------------

    def _record(self) -> bytes:
        expires = time.time() + self.seconds
        return json.dumps({"owner": self.owner, "expires": expires, "expires_utc": _utc(expires),
                           "seconds": self.seconds}).encode()

    def _try_take(self, takeover: bool) -> dict | None:
        """None when this writer now holds the lease; else the holder's record."""
        with self._store.guard():
            current, generation = self._store.read()
            expires = float((current or {}).get("expires", 0))
            if current is None:
                taken = self._store.create(self._record())
            elif current.get("owner") == self.owner or takeover or time.time() > expires:
                if current.get("owner") != self.owner:
                    why = "--takeover" if takeover else f"it expired at {_utc(expires)}"
                    log.info(f"taking over {self.uri} from {current.get('owner')} ({why})")
                taken = self._store.replace(self._record(), generation)
            else:
                return current
            if taken is not None:
                now = self._store.read()[0]
                if now is not None and now.get("owner") == self.owner:  # read back: see the docstring
                    return None
            return self._store.read()[0] or {"owner": "unknown", "expires": 0}

    def _renew_loop(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.seconds / 3):
            try:
                with self._store.guard():
                    current, generation = self._store.read()
                    if current is None or current.get("owner") != self.owner:
                        holder = "nobody" if current is None else current.get("owner")
                        self._lost = f"{self.uri}: this writer's lease was taken over by {holder}"
                        return
                    if self._store.replace(self._record(), generation) is None:
                        self._lost = f"{self.uri}: this writer's lease changed hands while renewing"
                        return
                renewed = time.monotonic()
            except StorageError as error:
                if time.monotonic() - renewed > self.seconds:
                    self._lost = f"{self.uri}: could not renew this writer's lease for " \
                                 f"{self.seconds:.0f} s ({error}); another writer may hold it now"
                    return
