"""Local working copies of places: verified copies of a source, staged outputs, mirrors.

- `local_copy(uri)`: what `uri` holds now, on local disk, keyed by the whole URI and by the
  source's content fingerprint, never trusted half-downloaded;
- `staged_output(uri)`: a local folder uploaded to `uri` when the block ends;
- `Mirror(uri)`: a run's local working folder, pushed to and pulled from `uri`.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

from job.storage.buckets import READ_RETRY_SECONDS, NotFound, blob, errors, retry, timeout
from job.storage.files import (
    PARTIAL_SUFFIX, copy_file, delete, download_dir, exists, files_below, is_remote, join,
    size_and_crc32c,
    local_path, read_bytes, scratch_root, sync, upload_dir, write_bytes, write_local,
)

COPIES = "covidct-copies"
FINGERPRINT = ".fingerprint"


def local_copy(uri: str) -> Path:
    """A local path holding what `uri` holds now: a file or a folder, verified and atomic.

    A local `uri` is returned as it is. For a bucket the copy lives under
    `<TMPDIR>/covidct-copies/<sha256 of the whole URI>/<fingerprint>/`, where the fingerprint is a
    hash of the listing's (name, size, CRC32C) of every object below `uri` (or of the one object).
    Each call lists the source again (one request), so a rebuilt dataset or a replaced weights file
    gets a new fingerprint and is downloaded again; an unchanged one is reused. A download goes to
    a temporary folder renamed into place only when complete, so a killed download is never
    trusted; two processes that fetch the same version at once both end with the complete copy.

    Raises:
        NotFound: nothing is at `uri`.
        StorageError: the bucket cannot be reached.
    """
    if not is_remote(uri):
        path = local_path(uri)
        if not path.exists():
            raise NotFound(f"cannot read {uri}: no such file or folder")
        return path
    is_file, entries = _source_listing(uri)
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:16]
    home = scratch_root() / COPIES / hashlib.sha256(uri.encode()).hexdigest()[:16]
    final = home / digest
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if not final.is_dir():
        partial = home / f".{digest}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
        try:
            if is_file:
                copy_file(uri, str(partial / name), READ_RETRY_SECONDS)
            else:
                sync(uri, str(partial), READ_RETRY_SECONDS)
            (partial / FINGERPRINT).write_text(json.dumps({"uri": uri, "entries": entries}))
            try:
                os.rename(partial, final)
            except OSError:
                if not final.is_dir():  # not "another process finished first": a real failure
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    for old in home.iterdir():  # earlier versions of this URI; best effort
        if old.name != digest and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return final / name if is_file else final


def fingerprint(uri: str) -> str:
    """A digest of what is at `uri` (a file or a folder): the names, sizes and CRC32C of its files.

    A local folder and its copy in a bucket have the same fingerprint; a bucket's is computed
    from its listing alone (no download).

    Raises:
        NotFound: nothing is at `uri`.
    """
    if is_remote(uri):
        entries = _source_listing(uri)[1]
    else:
        path = local_path(uri)
        if path.is_file():
            entries = [["", *size_and_crc32c(path)]]
        elif path.is_dir():
            entries = sorted([rel, *size_and_crc32c(p)] for rel, p in files_below(uri).items())
        else:
            raise NotFound(f"cannot read {uri}: no such file or folder")
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def _source_listing(uri: str) -> tuple[bool, list]:
    """(is a single object, sorted [name, size, crc32c] of what is at `uri`)."""
    single = blob(uri)
    with errors(uri, "read"):
        if single.exists(timeout=timeout(), retry=retry()):
            single.reload(timeout=timeout(), retry=retry())
            return True, [["", single.size, single.crc32c]]
    files = files_below(uri)
    if not files:
        raise NotFound(f"cannot read {uri}: there is no object or folder there")
    return False, sorted([rel, b.size, b.crc32c] for rel, b in files.items())


@contextlib.contextmanager
def staged_output(uri: str) -> Iterator[Path]:
    """A local folder to write into: `uri` itself, or a temporary folder uploaded to the bucket
    `uri` when the block ends without an error (files already there unchanged are not resent)."""
    if not is_remote(uri):
        path = local_path(uri)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="covidct-out-") as tmp:
        yield Path(tmp)
        upload_dir(tmp, uri)


class Mirror:
    """A local working folder for the place `uri`: files are written locally and pushed.

    For a local `uri` the working folder is `uri` itself and every push or pull is a no-op; for a
    bucket it is scratch space keyed by the whole URI (`<TMPDIR>/covidct-runs/<sha256>`).
    """

    def __init__(self, uri: str, retry_seconds: float = 120.0):
        self.uri = uri
        self.retry_seconds = retry_seconds
        if is_remote(uri):
            self.local = scratch_root() / "covidct-runs" / hashlib.sha256(uri.encode()).hexdigest()[:16]
        else:
            self.local = local_path(uri)
        self.local.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        return self.local / rel

    def push(self, rel: str) -> None:
        """Upload the local file or folder `rel` to the same place under `uri`."""
        if not is_remote(self.uri):
            return
        if self.path(rel).is_dir():
            upload_dir(str(self.path(rel)), join(self.uri, rel), self.retry_seconds)
        else:
            write_bytes(join(self.uri, rel), self.path(rel).read_bytes(), self.retry_seconds)

    def pull(self, rel: str) -> None:
        """Bring the file or folder `rel` of `uri` into the local folder (if it exists there)."""
        if not is_remote(self.uri):
            return
        source = join(self.uri, rel)
        if exists(source):
            write_local(self.path(rel), lambda out: out.write(read_bytes(source)))
        elif files_below(source):
            download_dir(source, str(self.path(rel)))

    def delete(self, rel: str) -> None:
        """Delete `rel` under `uri` and its local copy."""
        delete(join(self.uri, rel))
        if is_remote(self.uri):
            shutil.rmtree(self.path(rel), ignore_errors=True)

