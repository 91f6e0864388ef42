"""Where a lease record lives (`job.storage.lease`): a local file or a bucket object, each with
the same four operations (read, create, replace, delete_if) and a `guard` around a
read-check-write.

- Locally the record is created with O_EXCL, and every read-check-write runs under an `flock` of
  a lock file beside it (`.LEASE.lock`).
- In a bucket every change is conditional on the object's generation (`if_generation_match`: 0 to
  create, the generation read to renew, take over or release), so two takers cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from google.api_core import exceptions as api_exceptions

from job.storage.buckets import StorageError, blob, client, errors, retry, split, timeout
from job.storage.files import local_path, write_local

LOCK_SECONDS = 5.0  # the local lock is held for microseconds; longer means a stopped process


def _parse(data: bytes) -> dict:
    try:
        return json.loads(data or b"{}")
    except json.JSONDecodeError:  # cut off by a crash mid-write: nobody holds it
        return {"owner": "an unreadable lease", "expires": 0}


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class LocalRecord:
    """A lease file: created with O_EXCL, changed under an flock of `.LEASE.lock`."""

    def __init__(self, uri: str):
        self.path = local_path(uri)

    @contextlib.contextmanager
    def guard(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(f".{self.path.name}.lock")
        with errors(str(lock), "lock"), open(lock, "a") as handle:
            until = time.monotonic() + LOCK_SECONDS  # a holder paused mid-change must not hang us
            while not _try_lock(handle):
                if time.monotonic() > until:
                    raise StorageError(f"{lock} stayed locked by another process for {LOCK_SECONDS:.0f} s")
                time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self) -> tuple[dict | None, None]:
        try:
            return _parse(self.path.read_bytes()), None
        except FileNotFoundError:
            return None, None

    def create(self, data: bytes) -> bool | None:
        with errors(str(self.path), "create"):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return None
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        return True

    def replace(self, data: bytes, generation) -> bool:
        with errors(str(self.path), "write"):
            write_local(Path(self.path), lambda out: out.write(data))
        return True

    def delete_if(self, owner: str) -> None:
        with self.guard():
            current, _ = self.read()
            if current is not None and current.get("owner") == owner:
                self.path.unlink(missing_ok=True)


class BucketRecord:
    """A lease object changed only on its generation (GCS preconditions)."""

    def __init__(self, uri: str):
        self.uri = uri

    @contextlib.contextmanager
    def guard(self):
        yield  # the preconditions are the guard

    def read(self) -> tuple[dict | None, int | None]:
        with errors(self.uri, "read"):
            bucket, key = split(self.uri)
            found = client().bucket(bucket).get_blob(key, timeout=timeout(), retry=retry())
            if found is None:
                return None, None
            try:
                data = found.download_as_bytes(if_generation_match=found.generation,
                                               timeout=timeout(), retry=retry())
            except (api_exceptions.NotFound, api_exceptions.PreconditionFailed):
                return self.read()  # changed between the two calls: read the new one
        return _parse(data), found.generation

    def create(self, data: bytes) -> bool | None:
        return self._upload(data, 0)

    def replace(self, data: bytes, generation: int | None) -> bool | None:
        return self._upload(data, generation if generation is not None else 0)

    def _upload(self, data: bytes, generation: int) -> bool | None:
        with errors(self.uri, "write"):
            try:
                blob(self.uri).upload_from_string(data, if_generation_match=generation,
                                                  timeout=timeout(), retry=retry())
            except api_exceptions.PreconditionFailed:
                return None
        return True

    def delete_if(self, owner: str) -> None:
        current, now = self.read()
        if current is None or current.get("owner") != owner:
            return
        with errors(self.uri, "delete"):
            try:
                blob(self.uri).delete(if_generation_match=now, timeout=timeout(), retry=retry())
            except (api_exceptions.NotFound, api_exceptions.PreconditionFailed):
                pass  # gone or changed hands: not ours to delete any more
