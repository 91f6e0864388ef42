"""Bytes in and out of a place: a local folder (the default) or `gs://bucket/prefix`.

The only module that knows a bucket exists. Everything else names places by URI and calls these
functions, so a run folder, a data_dir or a sweep's storage can live on disk or in a bucket alike:
- bytes: `read_bytes`, `write_bytes` (atomic), `exists`, `list_files`, `delete`;
- `local_copy(uri)`: a verified local copy of a file or folder, keyed by the whole URI and by the
  source's content fingerprint, so a rebuilt dataset or a replaced weights file is fetched again;
- `staged_output(uri)`: a local folder to write into, uploaded when the block ends;
- `Mirror(uri)`: a local working folder that files are pushed from and pulled into (a run).
Buckets go through google-cloud-storage, which honours STORAGE_EMULATOR_HOST (TensorFlow's own
gs:// file system does not, so it could never be tested against a local emulator).

Failures a user can act on (a missing bucket or object, an endpoint that does not answer) raise
`StorageError` naming the URI. Writes to a bucket are retried with exponential backoff on
transient errors (connection errors, 408, 429, 5xx), so a preemptible job rides out a short outage.
"""

import base64
import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import uuid
from pathlib import Path
from typing import Iterator

import google_crc32c
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from job.errors import UserError

SCHEME = "gs://"
EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"
# (connect, read) seconds per request. An emulator answers at once, so a short timeout detects an
# outage quickly; Google's endpoint gets the library's usual minute.
EMULATOR_TIMEOUT = (2.0, 15.0)
CLOUD_TIMEOUT = (10.0, 60.0)
READ_RETRY_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 8.0
# Local writes go to a hidden temporary file first; listings ignore leftovers of a killed writer.
PARTIAL_SUFFIX = ".partial"


class StorageError(UserError):
    """A place cannot be read or written; the message names the URI and the problem."""


class NotFound(StorageError):
    """Nothing is at the URI (the place was reached and answered)."""

    exit_code = 2  # retrying will not make it appear


def _is_remote(uri: str) -> bool:
    return uri.startswith(SCHEME)


def absolute(uri: str) -> str:
    """`uri` unchanged for a bucket; a local path made absolute (for tools run elsewhere, Ray)."""
    return uri if _is_remote(uri) else os.path.abspath(uri)


def scratch_root() -> Path:
    """Where local copies and staged folders live: TMPDIR (the pods mount an emptyDir there)."""
    return Path(tempfile.gettempdir())


def join(uri: str, *parts: str) -> str:
    """`uri` with path components appended, in the URI's own syntax."""
    if _is_remote(uri):
        return "/".join([uri.rstrip("/")] + [part.strip("/") for part in parts if part])
    return os.path.join(uri, *parts)


def exists(uri: str) -> bool:
    """Whether a file (not a folder) exists at `uri`."""
    if not _is_remote(uri):
        return _local(uri).is_file()
    with _errors(uri, "check"):
        return _blob(uri).exists(timeout=_timeout(), retry=_retry())


def read_bytes(uri: str) -> bytes:
    with _errors(uri, "read"):
        if not _is_remote(uri):
            return _local(uri).read_bytes()
        return _blob(uri).download_as_bytes(timeout=_timeout(), retry=_retry())


def write_bytes(uri: str, data: bytes, retry_seconds: float = 120.0) -> None:
    """Write `data` to `uri` whole: readers see the old content or the new one, never a part."""
    with _errors(uri, "write"):
        if not _is_remote(uri):
            _write_local(_local(uri), lambda out: out.write(data))
        else:
            _blob(uri).upload_from_string(data, timeout=_timeout(), retry=_retry(retry_seconds))


def list_files(prefix_uri: str) -> list[str]:
    """Sorted paths, relative to `prefix_uri` and `/`-separated, of every file below it."""
    return sorted(_files(prefix_uri))


def upload_dir(local_dir: str, uri: str, retry_seconds: float = 120.0) -> None:
    """Copy every file under `local_dir` to `uri`, skipping files already there unchanged.

    Files whose size and CRC32C match are not sent again, so syncing a growing run folder after
    every checkpoint costs only the new files. Each bucket call is retried for `retry_seconds`.
    """
    if not Path(local_dir).is_dir():
        raise StorageError(f"cannot upload {local_dir}: no such folder")
    _sync(local_dir, uri, retry_seconds)


def download_dir(uri: str, local_dir: str) -> None:
    """Copy every file under `uri` into `local_dir`, skipping files already there unchanged."""
    if not _files(uri):
        raise StorageError(f"cannot download {uri}: there are no files under it")
    _sync(uri, local_dir, READ_RETRY_SECONDS)


def delete(uri_prefix: str) -> None:
    """Delete the file at `uri_prefix` or everything below it; a missing place is not an error."""
    if not _is_remote(uri_prefix):
        path = _local(uri_prefix)
        with _errors(uri_prefix, "delete"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        return
    bucket, key = _split(uri_prefix)
    if not key:
        raise StorageError(f"refusing to delete {uri_prefix}: it is a whole bucket")
    for name in [key, *(f"{key}/{rel}" for rel in _files(uri_prefix))]:
        with _errors(uri_prefix, "delete"):
            try:
                _client().bucket(bucket).blob(name).delete(timeout=_timeout(), retry=_retry())
            except api_exceptions.NotFound:
                pass  # already gone, which is what a delete wants


def check_reachable(uri: str, timeout_seconds: float = 10) -> None:
    """Fail fast, before a run or sweep starts, if `uri` cannot be used.

    For a bucket: that the endpoint answers and the bucket exists (one listing call, no retries).
    For a local path: that the folder can be created and written.
    """
    if not _is_remote(uri):
        probe = _local(uri) / ".write-check"
        with _errors(uri, "write to"):
            _write_local(probe, lambda out: None)
            probe.unlink()
        return
    bucket, key = _split(uri)
    with _errors(uri, "reach"):
        blobs = _client().list_blobs(
            bucket, prefix=key, max_results=1, timeout=timeout_seconds, retry=None
        )
        list(blobs)


def pyarrow_filesystem(uri: str):
    """`(pyarrow.fs.FileSystem, path)` for `uri`, or `(None, absolute path)` for a local one.

    For Ray, whose storage takes a pyarrow file system. pyarrow ignores STORAGE_EMULATOR_HOST, so
    the emulator's scheme and address are passed to it explicitly.
    """
    if not _is_remote(uri):
        return None, str(_local(uri).resolve())
    from pyarrow import fs  # only Ray needs pyarrow; the job itself never does

    bucket, key = _split(uri)
    path = f"{bucket}/{key}".rstrip("/")
    emulator = _emulator_url()
    if emulator is None:
        return fs.GcsFileSystem(), path
    parsed = urllib.parse.urlsplit(emulator)
    filesystem = fs.GcsFileSystem(
        anonymous=True, scheme=parsed.scheme, endpoint_override=parsed.netloc
    )
    return filesystem, path


# -- local copies, staged folders, mirrors -------------------------------------------------------

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
    if not _is_remote(uri):
        path = _local(uri)
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
                _copy(uri, str(partial / name), READ_RETRY_SECONDS)
            else:
                _sync(uri, str(partial), READ_RETRY_SECONDS)
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


def _source_listing(uri: str) -> tuple[bool, list]:
    """(is a single object, sorted [name, size, crc32c] of what is at `uri`)."""
    blob = _blob(uri)
    with _errors(uri, "read"):
        if blob.exists(timeout=_timeout(), retry=_retry()):
            blob.reload(timeout=_timeout(), retry=_retry())
            return True, [["", blob.size, blob.crc32c]]
    files = _files(uri)
    if not files:
        raise NotFound(f"cannot read {uri}: there is no object or folder there")
    return False, sorted([rel, b.size, b.crc32c] for rel, b in files.items())


@contextlib.contextmanager
def staged_output(uri: str) -> Iterator[Path]:
    """A local folder to write into: `uri` itself, or a temporary folder uploaded to the bucket
    `uri` when the block ends without an error (files already there unchanged are not resent)."""
    if not _is_remote(uri):
        path = _local(uri)
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
        if _is_remote(uri):
            self.local = scratch_root() / "covidct-runs" / hashlib.sha256(uri.encode()).hexdigest()[:16]
        else:
            self.local = _local(uri)
        self.local.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        return self.local / rel

    def push(self, rel: str) -> None:
        """Upload the local file or folder `rel` to the same place under `uri`."""
        if not _is_remote(self.uri):
            return
        if self.path(rel).is_dir():
            upload_dir(str(self.path(rel)), join(self.uri, rel), self.retry_seconds)
        else:
            write_bytes(join(self.uri, rel), self.path(rel).read_bytes(), self.retry_seconds)

    def pull(self, rel: str) -> None:
        """Bring the file or folder `rel` of `uri` into the local folder (if it exists there)."""
        if not _is_remote(self.uri):
            return
        source = join(self.uri, rel)
        if exists(source):
            _write_local(self.path(rel), lambda out: out.write(read_bytes(source)))
        elif _files(source):
            download_dir(source, str(self.path(rel)))

    def delete(self, rel: str) -> None:
        """Delete `rel` under `uri` and its local copy."""
        delete(join(self.uri, rel))
        if _is_remote(self.uri):
            shutil.rmtree(self.path(rel), ignore_errors=True)


# -- places -------------------------------------------------------------------------------------


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket name (expected gs://BUCKET/PREFIX)")
    return bucket, key.strip("/")


def _local(uri: str) -> Path:
    if "://" in uri:
        raise StorageError(f"{uri}: unsupported scheme (use a local path or gs://BUCKET/PREFIX)")
    return Path(uri)


def _files(uri: str, retry_seconds: float = READ_RETRY_SECONDS) -> dict:
    """Every file below `uri` by relative path: a `Path` locally, a listed `Blob` in a bucket."""
    if not _is_remote(uri):
        root = _local(uri)
        if not root.is_dir():
            return {}
        return {
            path.relative_to(root).as_posix(): path
            for path in root.rglob("*")
            if path.is_file() and not path.name.endswith(PARTIAL_SUFFIX)
        }
    bucket, key = _split(uri)
    folder = f"{key}/" if key else ""
    with _errors(uri, "list"):
        blobs = list(
            _client().list_blobs(
                bucket, prefix=folder, timeout=_timeout(), retry=_retry(retry_seconds)
            )
        )
    return {blob.name[len(folder) :]: blob for blob in blobs if not blob.name.endswith("/")}


def _sync(source: str, target: str, retry_seconds: float) -> None:
    there = _files(target, retry_seconds)
    for rel, entry in sorted(_files(source, retry_seconds).items()):
        if rel not in there or _fingerprint(entry) != _fingerprint(there[rel]):
            _copy(join(source, rel), join(target, rel), retry_seconds)


def _fingerprint(entry) -> tuple[int, str]:
    """(size, base64 CRC32C): what a bucket listing reports for every object."""
    if isinstance(entry, storage.Blob):
        return entry.size, entry.crc32c
    checksum = google_crc32c.Checksum()
    with open(entry, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            checksum.update(chunk)
    return entry.stat().st_size, base64.b64encode(checksum.digest()).decode()


def _copy(source: str, target: str, retry_seconds: float) -> None:
    """One file from `source` to `target`; at most one side is a bucket."""
    timeout, retry = _timeout(), _retry(retry_seconds)
    if _is_remote(target):
        with _errors(target, "write"):
            _blob(target).upload_from_filename(source, timeout=timeout, retry=retry)
    elif _is_remote(source):
        download = _blob(source).download_to_file
        with _errors(source, "read"):
            _write_local(Path(target), lambda out: download(out, timeout=timeout, retry=retry))
    else:
        with _errors(target, "write"), open(source, "rb") as data:
            _write_local(Path(target), lambda out: shutil.copyfileobj(data, out))


def _write_local(path: Path, fill) -> None:
    """Write through a temporary file renamed into place, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")
    try:
        with open(partial, "xb") as out:
            fill(out)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


# -- buckets ------------------------------------------------------------------------------------


def _emulator_url() -> str | None:
    value = os.environ.get(EMULATOR_VARIABLE)
    if not value:
        return None
    return value if "://" in value else f"http://{value}"


def _client() -> storage.Client:
    return _client_for(_emulator_url())


@functools.cache
def _client_for(emulator: str | None) -> storage.Client:
    """One client per endpoint, made on first use: never at import, which must stay offline."""
    if emulator is not None:
        return storage.Client(project="test", credentials=AnonymousCredentials())
    try:
        return storage.Client()
    except auth_exceptions.DefaultCredentialsError as error:
        raise StorageError(
            "no Google Cloud credentials for gs:// access: run `gcloud auth application-default "
            "login` or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from error


def _blob(uri: str) -> storage.Blob:
    bucket, key = _split(uri)
    if not key:
        raise StorageError(f"{uri}: names a bucket, not an object")
    return _client().bucket(bucket).blob(key)


def _timeout() -> tuple[float, float]:
    return EMULATOR_TIMEOUT if _emulator_url() else CLOUD_TIMEOUT


def _retry(seconds: float = READ_RETRY_SECONDS):
    """The library's own transient-error predicate, with our deadline and a short backoff cap."""
    return DEFAULT_RETRY.with_timeout(seconds).with_delay(initial=0.5, maximum=MAX_BACKOFF_SECONDS)


@contextlib.contextmanager
def _errors(uri: str, doing: str):
    """Turn whatever a storage call raises into a StorageError saying what failed, and where."""
    try:
        yield
    except api_exceptions.NotFound as error:
        raise StorageError(f"cannot {doing} {uri}: {_what_is_missing(uri)}") from error
    except api_exceptions.RetryError as error:
        problem = f"{_describe(error.cause)}, still failing after retries"
        raise StorageError(f"cannot {doing} {uri}: {problem}") from error
    # requests' errors and ConnectionError are OSErrors too: handle them before local file errors.
    except (
        api_exceptions.GoogleAPICallError,
        auth_exceptions.GoogleAuthError,
        requests.RequestException,
        ConnectionError,
    ) as error:
        raise StorageError(f"cannot {doing} {uri}: {_describe(error)}") from error
    except FileNotFoundError as error:
        raise StorageError(f"cannot {doing} {uri}: no such file") from error
    except OSError as error:
        raise StorageError(f"cannot {doing} {uri}: {error.strerror or error}") from error


def _describe(error: BaseException | None) -> str:
    if isinstance(error, api_exceptions.GoogleAPICallError):
        detail = error.errors[0].get("message", "") if error.errors else ""
        return f"HTTP {error.code} from {_endpoint()}" + (f": {detail}" if detail else "")
    return f"no answer from {_endpoint()} ({type(error).__name__})"


def _endpoint() -> str:
    return _emulator_url() or "storage.googleapis.com"


def _what_is_missing(uri: str) -> str:
    """A 404 looks the same for a missing bucket and a missing object: ask which one it was."""
    bucket, _ = _split(uri)
    try:
        bucket_exists = _client().bucket(bucket).exists(timeout=_timeout(), retry=None)
    except (api_exceptions.GoogleAPICallError, requests.RequestException):
        return "not found"
    return "no such object" if bucket_exists else f"bucket '{bucket}' does not exist"
