"""A sweep's folders on a bucket where the service account may touch objects only
(`job.storage.permissions`): what Ray would need, made first; a refusal named with its role.

Here, not under tests/job/: the in-memory emulator that holds pyarrow's folder markers is the
sweep tests' fixture (conftest.py), and only Ray's storage calls need these folders.
"""

import re
import uuid

import pytest

from job.errors import UserError
from job.storage.permissions import bucket_permissions, make_folders
from tests.fault_proxy import FaultProxy
from tests.tune.conftest import BUCKET_METADATA, NO_BUCKETS_GET, MemoryBucket


def test_the_sweep_folder_is_made_without_reading_bucket_metadata(memory_bucket):
    from pyarrow import fs

    with FaultProxy(memory_bucket.endpoint) as proxy:
        proxy.deny("GET", BUCKET_METADATA, 403, NO_BUCKETS_GET)
        filesystem = fs.GcsFileSystem(anonymous=True, scheme="http",
                                      endpoint_override=proxy.endpoint.removeprefix("http://"))
        prefix = f"{MemoryBucket.bucket}/fresh-{uuid.uuid4().hex[:8]}/sweeps"
        # What Ray does for a new experiment folder: refused, as GCS refuses an objectUser.
        with pytest.raises(PermissionError, match="storage.buckets.get"):
            filesystem.create_dir(f"{prefix}/first", recursive=True)
        make_folders(filesystem, f"{prefix}/second")
        filesystem.create_dir(f"{prefix}/second/trial/checkpoint_000000", recursive=True)
        make_folders(filesystem, f"{prefix}/second")  # again, as a resumed sweep does
        # Nothing but objects was asked for after the first, refused, call.
        asked = [path for method, path in proxy.requests if re.search(BUCKET_METADATA, path)]
        assert len(asked) == 1
        # Without objects.create either, the message names the permission and the role.
        proxy.deny("POST", r"^/upload/storage/v1/b/", 403,
                   "covidct@test.iam.gserviceaccount.com does not have storage.objects.create access")
        with pytest.raises(UserError) as error, bucket_permissions("gs://covidct-test/x/sweeps/third"):
            make_folders(filesystem, f"{prefix}/third")
        assert "the bucket refused storage.objects.create for gs://covidct-test/x/sweeps/third" in str(error.value)
        assert "roles/storage.objectUser" in str(error.value)


def test_a_refused_bucket_metadata_read_names_the_permission_and_the_role():
    with pytest.raises(UserError) as error, bucket_permissions("gs://b/sweeps/s"):
        raise PermissionError(f"google::cloud::Status(PERMISSION_DENIED: Permanent error, with a "
                              f"last message of {NO_BUCKETS_GET}")
    assert "refused storage.buckets.get for gs://b/sweeps/s" in str(error.value)
    assert "roles/storage.legacyBucketReader" in str(error.value)
