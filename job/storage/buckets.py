"""The bucket side of storage: the google-cloud-storage client, its retries and its errors.

google-cloud-storage honours STORAGE_EMULATOR_HOST (TensorFlow's own gs:// file system does not, so
it could never be tested against a local emulator). Every failure becomes a `StorageError` that
names the URI and the problem.
"""

import contextlib
import os
import threading
import time

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


class StorageError(UserError):
    """A place cannot be read or written; the message names the URI and the problem."""


class NotFound(StorageError):
    """Nothing is at the URI (the place was reached and answered)."""

    exit_code = 2  # retrying will not make it appear



def split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket name (expected gs://BUCKET/PREFIX)")
    return bucket, key.strip("/")



def emulator_url() -> str | None:
    value = os.environ.get(EMULATOR_VARIABLE)
    if not value:
        return None
    return value if "://" in value else f"http://{value}"


# GKE's metadata server may not answer for a new pod's Workload Identity for a few seconds: the
# first storage calls wait this long for credentials before giving up (an env var, for tests).
CREDENTIALS_WAIT_VARIABLE = "COVIDCT_CREDENTIALS_WAIT_SECONDS"
NO_CREDENTIALS = (
    "no Google Cloud credentials for gs:// access after {wait:.0f} s: on GKE, the metadata server "
    "gave this pod no Workload Identity token (check that its Kubernetes service account is bound "
    "to a Google service account: README, 'Prepare the cluster'); on a workstation, run `gcloud "
    "auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
)
_clients = threading.local()


def client() -> storage.Client:
    """One client per endpoint and thread (a background upload has its own: clients are not
    thread-safe), made on first use: never at import, which must stay offline."""
    cache = _clients.__dict__.setdefault("by_endpoint", {})
    emulator = emulator_url()
    if emulator not in cache:
        cache[emulator] = _new_client(emulator)
    return cache[emulator]


def _new_client(emulator: str | None) -> storage.Client:
    if emulator is not None:
        return storage.Client(project="test", credentials=AnonymousCredentials())
    return with_credentials(storage.Client)


def with_credentials(call):
    """`call()`, retried with backoff while credentials are not there yet (a new pod's Workload
    Identity), for up to COVIDCT_CREDENTIALS_WAIT_SECONDS (default 60).

    Raises:
        StorageError (exit 1: may succeed on retry) naming Workload Identity when they never come.
    """
    wait = float(os.environ.get(CREDENTIALS_WAIT_VARIABLE, "60"))
    deadline, delay = time.monotonic() + wait, 0.5
    while True:
        try:
            return call()
        except (auth_exceptions.DefaultCredentialsError, auth_exceptions.RefreshError,
                auth_exceptions.TransportError) as error:
            if time.monotonic() + delay > deadline:
                raise StorageError(NO_CREDENTIALS.format(wait=wait)) from error
            time.sleep(delay)
            delay = min(2 * delay, MAX_BACKOFF_SECONDS)


def blob(uri: str) -> storage.Blob:
    bucket, key = split(uri)
    if not key:
        raise StorageError(f"{uri}: names a bucket, not an object")
    return client().bucket(bucket).blob(key)


def timeout() -> tuple[float, float]:
    return EMULATOR_TIMEOUT if emulator_url() else CLOUD_TIMEOUT


def retry(seconds: float = READ_RETRY_SECONDS):
    """The library's own transient-error predicate, with our deadline and a short backoff cap."""
    return DEFAULT_RETRY.with_timeout(seconds).with_delay(initial=0.5, maximum=MAX_BACKOFF_SECONDS)


@contextlib.contextmanager
def errors(uri: str, doing: str):
    """Turn whatever a storage call raises into a StorageError saying what failed, and where."""
    try:
        yield
    except api_exceptions.NotFound as error:
        raise StorageError(f"cannot {doing} {uri}: {what_is_missing(uri)}") from error
    except api_exceptions.RetryError as error:
        problem = f"{describe(error.cause)}, still failing after retries"
        raise StorageError(f"cannot {doing} {uri}: {problem}") from error
    # requests' errors and ConnectionError are OSErrors too: handle them before local file errors.
    except (
        api_exceptions.GoogleAPICallError,
        auth_exceptions.GoogleAuthError,
        requests.RequestException,
        ConnectionError,
    ) as error:
        raise StorageError(f"cannot {doing} {uri}: {describe(error)}") from error
    except FileNotFoundError as error:
        raise StorageError(f"cannot {doing} {uri}: no such file") from error
    except OSError as error:
        raise StorageError(f"cannot {doing} {uri}: {error.strerror or error}") from error


def describe(error: BaseException | None) -> str:
    if isinstance(error, api_exceptions.GoogleAPICallError):
        detail = error.errors[0].get("message", "") if error.errors else ""
        return f"HTTP {error.code} from {endpoint()}" + (f": {detail}" if detail else "")
    return f"no answer from {endpoint()} ({type(error).__name__})"


def endpoint() -> str:
    return emulator_url() or "storage.googleapis.com"


def what_is_missing(uri: str) -> str:
    """A 404 looks the same for a missing bucket and a missing object: ask which one it was."""
    bucket, _ = split(uri)
    try:
        bucket_exists = client().bucket(bucket).exists(timeout=timeout(), retry=None)
    except (api_exceptions.GoogleAPICallError, requests.RequestException):
        return "not found"
    return "no such object" if bucket_exists else f"bucket '{bucket}' does not exist"
