"""What a bucket's IAM allows a sweep: folders made without bucket metadata, refusals explained.

The README's service account holds `roles/storage.objectUser` on the bucket: objects only, no
`storage.buckets.get`. Ray (through pyarrow) would read the bucket's metadata to make a sweep's
folder; `make_folders` makes them first so it never needs to, and `bucket_permissions` turns
the refusal that remains possible (a role without object rights) into one line naming the
permission and the role that grants it (docs: STACK.md, "GCS permissions").
"""

from __future__ import annotations

import contextlib
import re

from job.errors import UserError

PERMISSION = re.compile(r"storage\.[a-zA-Z]+\.[a-zA-Z]+")
ROLE_FOR = {
    "storage.buckets.get": "roles/storage.legacyBucketReader (or avoid the call: see README, IAM)",
}


def make_folders(filesystem, path: str) -> None:
    """The folder markers of `path` (bucket/prefix.../name), made top down before Ray needs them.

    Ray creates an experiment's folder with pyarrow's recursive `create_dir`, which, when no
    parent folder marker exists, reads the bucket's metadata: `storage.buckets.get`, which
    `roles/storage.objectUser` does not grant. Each non-recursive `create_dir` below checks only
    its parent's marker (an object) and writes its own, so with these in place no call of Ray's
    reaches the bucket itself. Local folders need nothing (`filesystem` is None).
    """
    if filesystem is None:
        return
    parts = path.split("/")  # bucket, prefix..., name
    for end in range(2, len(parts) + 1):
        filesystem.create_dir("/".join(parts[:end]), recursive=False)


@contextlib.contextmanager
def bucket_permissions(uri: str):
    """A bucket's PERMISSION_DENIED (pyarrow's PermissionError, under Ray) inside the block as a
    UserError (exit 1) naming `uri`, the permission and the role that grants it."""
    try:
        yield
    except PermissionError as error:
        text = str(error)
        found = PERMISSION.search(text)
        permission = found.group(0) if found else "a storage permission"
        role = ROLE_FOR.get(permission, "roles/storage.objectUser")
        raise UserError(
            f"the bucket refused {permission} for {uri}: the service account this sweep runs "
            f"as (the pods' Workload Identity, or your gcloud login) needs it on the bucket; "
            f"grant {role}. Storage said: {text.splitlines()[0][:300]}") from None
