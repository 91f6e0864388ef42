"""A real GCS emulator on 127.0.0.1 for the tests (a pytest plugin loaded by conftest.py).

`gcs_emulator` runs `gcp-storage-emulator` as a subprocess for the whole session and points
google-cloud-storage at it through STORAGE_EMULATOR_HOST. It keeps its objects in a data folder
rather than in memory, so a test can stop it to simulate an outage and start it again on the same
port with every object still there. `gcs_prefix` gives each test its own gs:// prefix.
"""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

BUCKET = "covidct-test"
START_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _emulator_command() -> list[str]:
    """The emulator's console script from this interpreter's environment (the venv), else PATH."""
    beside_python = Path(sys.executable).with_name("gcp-storage-emulator")
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which("gcp-storage-emulator")
    if found is None:
        pytest.fail("gcp-storage-emulator is not installed: pip install gcp-storage-emulator")
    return [found]


class GcsEmulator:
    """One emulator process; `stop()` and `start()` simulate an outage on the same port."""

    def __init__(self, data_dir: Path, log_path: Path, bucket: str = BUCKET):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.bucket = bucket
        self._data_dir = data_dir
        self._log_path = log_path
        self._process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """The value of STORAGE_EMULATOR_HOST (despite its name, a URL with a scheme)."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def uri(self, prefix: str = "") -> str:
        return f"gs://{self.bucket}/{prefix.lstrip('/')}"

    def start(self) -> None:
        """Start the emulator (again) and wait until it serves the bucket; fail loudly if not."""
        if self.running:
            return
        command = _emulator_command() + [
            "--data-dir", str(self._data_dir),
            "start", "--host", self.host, "--port", str(self.port),
            "--default-bucket", self.bucket, "-q",
        ]  # fmt: skip
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._answers():
            problem = self._startup_problem()
            if problem is None and time.monotonic() > deadline:
                problem = f"did not answer within {START_TIMEOUT_SECONDS:.0f} s"
            if problem is not None:
                self.stop()
                self._fail(problem)
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and wait until it has exited.

        The emulator rewrites its whole object index (`<data dir>/.meta`) in place on every
        change, so a stop during a client's upload can leave it cut off, and the emulator then
        refuses to start again. The index read just before the stop is put back in that case
        (the outage this simulates loses at most the uploads of those milliseconds, which their
        clients retry)."""
        if self._process is None:
            return
        index = self._data_dir / ".meta"
        snapshot = None
        for _ in range(20):  # a read that caught a write half-way is not JSON: read again
            try:
                snapshot = index.read_bytes()
                json.loads(snapshot)
                break
            except (OSError, ValueError):
                snapshot = None
                time.sleep(0.05)
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if snapshot is not None and index.exists():
            try:
                json.loads(index.read_bytes())
            except ValueError:
                index.write_bytes(snapshot)

    def _answers(self) -> bool:
        url = f"{self.endpoint}/storage/v1/b/{self.bucket}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _output(self) -> str:
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    def _startup_problem(self) -> str | None:
        """Why the process cannot come up, if it already shows: it exited, or its server thread
        crashed (a port taken meanwhile kills only that thread and leaves the process waiting)."""
        if self._process.poll() is not None:
            return f"exited with code {self._process.returncode}"
        if "Traceback" in self._output():
            return "crashed"
        return None

    def _fail(self, problem: str) -> None:
        pytest.fail(
            f"the GCS emulator on {self.endpoint} {problem}; its output:\n{self._output()[-2000:]}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """A running emulator with the bucket `covidct-test`; STORAGE_EMULATOR_HOST points at it."""
    folder = tmp_path_factory.mktemp("gcs-emulator")
    emulator = GcsEmulator(folder / "data", folder / "emulator.log")
    with pytest.MonkeyPatch.context() as env:
        try:
            emulator.start()
            env.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
            yield emulator
        finally:
            emulator.stop()


@pytest.fixture
def gcs_prefix(gcs_emulator, request):
    """A gs:// prefix no other test uses, on a running emulator (restarted if left stopped)."""
    gcs_emulator.start()
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return gcs_emulator.uri(f"{name}-{uuid.uuid4().hex[:8]}")
