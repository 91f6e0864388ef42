"""Bytes in and out of a place: a local folder (the default) or `gs://bucket/prefix`.

The only room that knows a bucket exists (`buckets` holds the client). Everything else names places by URI and calls these
functions, so a run folder, a data_dir or a sweep's storage can live on disk or in a bucket alike:
- bytes: `read_bytes`, `write_bytes` (atomic), `exists`, `list_files`, `delete`;
- `local_copy(uri)`: a verified local copy of a file or folder, keyed by the whole URI and by the
  source's content fingerprint, so a rebuilt dataset or a replaced weights file is fetched again;
- `staged_output(uri)`: a local folder to write into, uploaded when the block ends;
- `Mirror(uri)`: a local working folder that files are pushed from and pulled into (a run);
- `Lease(uri, name, seconds)`: one writer per place (`lease`);
- `manifest(folder)` / `mismatch(folder, manifest)`: each file's size and CRC32C, and the check.
No object name escapes the folder it is copied into (`files.inside`, on every download).
Buckets go through google-cloud-storage, which honours STORAGE_EMULATOR_HOST (TensorFlow's own
gs:// file system does not, so it could never be tested against a local emulator).

Failures a user can act on (a missing bucket or object, an endpoint that does not answer) raise
`StorageError` naming the URI. Writes to a bucket are retried with exponential backoff on
transient errors (connection errors, 408, 429, 5xx), so a preemptible job rides out a short outage.
"""

from job.storage.buckets import NotFound, StorageError
from job.storage.copies import Mirror, fingerprint, local_copy, staged_output
from job.storage.files import (
    absolute, check_reachable, delete, download_dir, exists, join, list_files, pyarrow_filesystem,
    read_bytes, scratch_root, upload_dir, write_bytes,
)
from job.storage.lease import Lease, LeaseHeld, LeaseLost
from job.storage.manifest import manifest, mismatch

__all__ = [
    "Lease", "LeaseHeld", "LeaseLost", "Mirror", "NotFound", "StorageError", "absolute",
    "check_reachable", "delete", "download_dir", "exists", "fingerprint", "join", "list_files",
    "local_copy", "manifest", "mismatch", "pyarrow_filesystem", "read_bytes", "scratch_root",
    "staged_output", "upload_dir", "write_bytes",
]
