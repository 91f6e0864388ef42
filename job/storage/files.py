"""Files in and out of a place: a local folder or a bucket, by URI.

Writes are whole (a local write goes through a temporary file renamed into place; an object upload
is atomic); folders are synced by (size, CRC32C), so syncing a growing run folder costs only the
changed files.
"""

import base64
import os
import shutil
import tempfile
import urllib.parse
import uuid
from pathlib import Path

import google_crc32c
from google.api_core import exceptions as api_exceptions
from google.cloud import storage

from job.storage.buckets import (
    READ_RETRY_SECONDS, SCHEME, StorageError, blob, client, emulator_url, errors, retry,
    split, timeout, with_credentials,
)

# Local writes go to a hidden temporary file first; listings ignore leftovers of a killed writer.
PARTIAL_SUFFIX = ".partial"


def is_remote(uri: str) -> bool:
    return uri.startswith(SCHEME)


def absolute(uri: str) -> str:
    """`uri` unchanged for a bucket; a local path made absolute (for tools run elsewhere, Ray)."""
    return uri if is_remote(uri) else os.path.abspath(uri)


def scratch_root() -> Path:
    """Where local copies and staged folders live: TMPDIR (the pods mount an emptyDir there)."""
    return Path(tempfile.gettempdir())


def join(uri: str, *parts: str) -> str:
    """`uri` with path components appended, in the URI's own syntax."""
    if is_remote(uri):
        return "/".join([uri.rstrip("/")] + [part.strip("/") for part in parts if part])
    return os.path.join(uri, *parts)


def exists(uri: str) -> bool:
    """Whether a file (not a folder) exists at `uri`."""
    if not is_remote(uri):
        return local_path(uri).is_file()
    with errors(uri, "check"):
        return blob(uri).exists(timeout=timeout(), retry=retry())


def read_bytes(uri: str) -> bytes:
    with errors(uri, "read"):
        if not is_remote(uri):
            return local_path(uri).read_bytes()
        return blob(uri).download_as_bytes(timeout=timeout(), retry=retry())


def write_bytes(uri: str, data: bytes, retry_seconds: float = 120.0) -> None:
    """Write `data` to `uri` whole: readers see the old content or the new one, never a part."""
    with errors(uri, "write"):
        if not is_remote(uri):
            write_local(local_path(uri), lambda out: out.write(data))
        else:
            blob(uri).upload_from_string(data, timeout=timeout(), retry=retry(retry_seconds))


def list_files(prefix_uri: str) -> list[str]:
    """Sorted paths, relative to `prefix_uri` and `/`-separated, of every file below it."""
    return sorted(files_below(prefix_uri))


def upload_dir(local_dir: str, uri: str, retry_seconds: float = 120.0) -> None:
    """Copy every file under `local_dir` to `uri`, skipping files already there unchanged.

    Files whose size and CRC32C match are not sent again, so syncing a growing run folder after
    every checkpoint costs only the new files. Each bucket call is retried for `retry_seconds`.
    """
    if not Path(local_dir).is_dir():
        raise StorageError(f"cannot upload {local_dir}: no such folder")
    sync(local_dir, uri, retry_seconds)


def download_dir(uri: str, local_dir: str) -> None:
    """Copy every file under `uri` into `local_dir`, skipping files already there unchanged."""
    if not files_below(uri):
        raise StorageError(f"cannot download {uri}: there are no files under it")
    sync(uri, local_dir, READ_RETRY_SECONDS)


def delete(uri_prefix: str) -> None:
    """Delete the file at `uri_prefix` or everything below it; a missing place is not an error."""
    if not is_remote(uri_prefix):
        path = local_path(uri_prefix)
        with errors(uri_prefix, "delete"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        return
    bucket, key = split(uri_prefix)
    if not key:
        raise StorageError(f"refusing to delete {uri_prefix}: it is a whole bucket")
    for name in [key, *(f"{key}/{rel}" for rel in files_below(uri_prefix))]:
        with errors(uri_prefix, "delete"):
            try:
                client().bucket(bucket).blob(name).delete(timeout=timeout(), retry=retry())
            except api_exceptions.NotFound:
                pass  # already gone, which is what a delete wants


def check_reachable(uri: str, timeout_seconds: float = 10) -> None:
    """Fail fast, before a run or sweep starts, if `uri` cannot be used.

    For a bucket: that the endpoint answers and the bucket exists (one listing call, no retries
    but for credentials that are not there yet: `with_credentials`). For a local path: that the
    folder can be created and written.
    """
    if not is_remote(uri):
        probe = local_path(uri) / ".write-check"
        with errors(uri, "write to"):
            write_local(probe, lambda out: None)
            probe.unlink()
        return
    bucket, key = split(uri)
    with errors(uri, "reach"):
        with_credentials(lambda: list(client().list_blobs(
            bucket, prefix=key, max_results=1, timeout=timeout_seconds, retry=None)))


def pyarrow_filesystem(uri: str):
    """`(pyarrow.fs.FileSystem, path)` for `uri`, or `(None, absolute path)` for a local one.

    For Ray, whose storage takes a pyarrow file system. pyarrow ignores STORAGE_EMULATOR_HOST, so
    the emulator's scheme and address are passed to it explicitly.
    """
    if not is_remote(uri):
        return None, str(local_path(uri).resolve())
    from pyarrow import fs  # only Ray needs pyarrow; the job itself never does

    bucket, key = split(uri)
    path = f"{bucket}/{key}".rstrip("/")
    emulator = emulator_url()
    if emulator is None:
        return fs.GcsFileSystem(), path
    parsed = urllib.parse.urlsplit(emulator)
    filesystem = fs.GcsFileSystem(
        anonymous=True, scheme=parsed.scheme, endpoint_override=parsed.netloc
    )
    return filesystem, path



def local_path(uri: str) -> Path:
    if "://" in uri:
        raise StorageError(f"{uri}: unsupported scheme (use a local path or gs://BUCKET/PREFIX)")
    return Path(uri)


def files_below(uri: str, retry_seconds: float = READ_RETRY_SECONDS) -> dict:
    """Every file below `uri` by relative path: a `Path` locally, a listed `Blob` in a bucket."""
    if not is_remote(uri):
        root = local_path(uri)
        if not root.is_dir():
            return {}
        return {
            path.relative_to(root).as_posix(): path
            for path in root.rglob("*")
            if path.is_file() and not path.name.endswith(PARTIAL_SUFFIX)
        }
    bucket, key = split(uri)
    folder = f"{key}/" if key else ""
    with errors(uri, "list"):
        blobs = list(
            client().list_blobs(
                bucket, prefix=folder, timeout=timeout(), retry=retry(retry_seconds)
            )
        )
    return {blob.name[len(folder) :]: blob for blob in blobs if not blob.name.endswith("/")}


def sync(source: str, target: str, retry_seconds: float) -> None:
    """Copy what differs from `source` to `target`; every name is checked before anything is
    copied, so an object named to escape the target writes nothing at all.

    Raises:
        StorageError (exit 1): a name under `source` would leave `target` (`inside`).
    """
    there = files_below(target, retry_seconds)
    found = files_below(source, retry_seconds)
    for rel in found:
        inside(rel, source)
    for rel, entry in sorted(found.items()):
        if rel not in there or size_and_crc32c(entry) != size_and_crc32c(there[rel]):
            copy_file(join(source, rel), join(target, rel), retry_seconds)


def inside(rel: str, source: str) -> str:
    """`rel` if it names a place inside the folder it is joined to, else a StorageError.

    A bucket's object names are free text: `run/checkpoints/e1/../../../../home/u/.bashrc` and
    `run/checkpoints/e1//home/u/.bashrc` are valid names whose paths below `run/checkpoints/e1/`
    (`../../../../home/u/.bashrc`, `/home/u/.bashrc`) land outside any local target folder.
    """
    if rel.startswith("/") or ".." in rel.split("/"):
        raise StorageError(f"refusing to copy {source.rstrip('/')}/{rel}: its name {rel!r} would "
                           "leave the folder it is copied into (someone wrote that object on "
                           "purpose or by mistake: delete it); nothing was copied")
    return rel


def size_and_crc32c(entry) -> tuple[int, str]:
    """(size, base64 CRC32C): what a bucket listing reports for every object."""
    if isinstance(entry, storage.Blob):
        return entry.size, entry.crc32c
    checksum = google_crc32c.Checksum()
    with open(entry, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            checksum.update(chunk)
    return entry.stat().st_size, base64.b64encode(checksum.digest()).decode()


def copy_file(source: str, target: str, retry_seconds: float) -> None:
    """One file from `source` to `target`; at most one side is a bucket."""
    deadline, policy = timeout(), retry(retry_seconds)
    if is_remote(target):
        with errors(target, "write"):
            blob(target).upload_from_filename(source, timeout=deadline, retry=policy)
    elif is_remote(source):
        download = blob(source).download_to_file
        with errors(source, "read"):
            write_local(Path(target), lambda out: download(out, timeout=deadline, retry=policy))
    else:
        with errors(target, "write"), open(source, "rb") as data:
            write_local(Path(target), lambda out: shutil.copyfileobj(data, out))


def write_local(path: Path, fill) -> None:
    """Write through a temporary file renamed into place, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")
    try:
        with open(partial, "xb") as out:
            fill(out)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)

