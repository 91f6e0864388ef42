"""What the sweep tests share: an in-memory GCS emulator, the same behind a proxy that refuses
bucket metadata as GCS refuses it to roles/storage.objectUser, one real autoscaling Ray cluster
for the whole package, and small readers of a sweep's files.

The cluster is started as the KubeRay sweep cluster runs: a head with 0 CPUs and a worker group
at zero that Ray's own autoscaler (fake multi-node provider, every node on 127.0.0.1) grows for
waiting trials (tests/ray_autoscaler.py). Every Ray process reaches the bucket through the proxy.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from job import storage
from tests.fault_proxy import FaultProxy
from tests.gcs_fixture import free_port
from tests.helpers import answers
from tests.ray_autoscaler import AutoscalingCluster

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
JOB_SECONDS = 240
MAX_WORKERS = 2  # the test cluster's worker group: 0..2 nodes of 1 CPU


class MemoryBucket:
    """An in-memory GCS emulator for Ray's storage.

    pyarrow (Ray's storage layer) writes folder-marker objects ("sweeps/"), which the session
    emulator's file-backed store cannot hold beside the objects under them (it answers 500 and
    pyarrow retries for minutes); Google's flat namespace and the in-memory store hold both.
    """

    bucket = "covidct-test"

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def uri(self, prefix: str) -> str:
        return f"gs://{self.bucket}/{prefix}"


# What GCS answers a service account with roles/storage.objectUser that reads bucket metadata.
BUCKET_METADATA = rf"^/storage/v1/b/{MemoryBucket.bucket}(\?|$)"
NO_BUCKETS_GET = ("covidct@test.iam.gserviceaccount.com does not have storage.buckets.get access "
                  "to the Google Cloud Storage bucket. Permission 'storage.buckets.get' denied")


@pytest.fixture(scope="package")
def memory_bucket(tmp_path_factory):
    bucket = MemoryBucket()
    log_path = tmp_path_factory.mktemp("gcs-memory") / "emulator.log"
    command = [str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port",
               str(bucket.port), "--default-bucket", bucket.bucket, "--in-memory", "-q"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not answers(f"{bucket.endpoint}/storage/v1/b/{bucket.bucket}"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the in-memory GCS emulator did not start:\n{log_path.read_text()}", pytrace=False)
            time.sleep(0.1)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("STORAGE_EMULATOR_HOST", bucket.endpoint)
            yield bucket
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="package")
def object_user_bucket(memory_bucket):
    """The in-memory emulator behind a proxy that refuses bucket-metadata reads, as GCS refuses
    them to the pods' service account (roles/storage.objectUser has no storage.buckets.get)."""
    with FaultProxy(memory_bucket.endpoint) as proxy:
        proxy.deny("GET", BUCKET_METADATA, 403, NO_BUCKETS_GET)
        yield proxy


@pytest.fixture(scope="module")
def ray_cluster(object_user_bucket):
    """A 0-CPU head whose 1-CPU workers (at most 2) Ray's autoscaler adds from zero; every Ray
    process (job drivers, trials) reaches the bucket through the object-user proxy. One per test
    module: a cluster another module's sweep grew is not at zero (its workers idle a minute)."""
    cluster = AutoscalingCluster({
        **os.environ,
        "STORAGE_EMULATOR_HOST": object_user_bucket.endpoint,  # trials and job drivers inherit it
        "PYTHONPATH": str(REPO),  # drivers joining from this checkout import tune/ and job/
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }, worker_cpus=1, max_workers=MAX_WORKERS, idle_minutes=1)
    try:
        cluster.start()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAY_AUTH_MODE", "disabled")
            yield cluster
    finally:
        cluster.stop()


def submitted(cluster: AutoscalingCluster, argv: list[str], seconds: float = JOB_SECONDS) -> str:
    """`ray job submit ... -- python -m tune ARGV`, waited for; the job's logs once it succeeded
    (the test fails with the logs' tail if it failed or ran over `seconds`)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    job_id = f"covidct-sweep-{uuid.uuid4().hex[:8]}"
    submit = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard,
              "--submission-id", job_id, "--no-wait", "--", "python", "-m", "tune", *argv]
    done = subprocess.run(submit, env=cluster.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    client = JobSubmissionClient(cluster.dashboard)
    deadline = time.monotonic() + seconds
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                             JobStatus.STOPPED}:
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            pytest.fail(f"job {job_id} still {status} after {seconds} s:\n"
                        f"{client.get_job_logs(job_id)[-4000:]}")
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-6000:]
    return logs


def driver(cluster: AutoscalingCluster, argv: list[str], log_path: Path) -> subprocess.Popen:
    """`python -m tune ARGV` as a driver on the cluster's head machine (what `ray job submit` runs),
    its output in `log_path`. A separate process: the test process's own Ray would resolve
    127.0.0.1 to the interface address (its ray_constants were read without the loopback switch)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "tune", *argv], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT,
                                env={**cluster.env, "RAY_ADDRESS": cluster.address})


def finish(process: subprocess.Popen, log_path: Path, seconds: float = JOB_SECONDS) -> int:
    """The driver's exit code once it ends (killed after `seconds`)."""
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the driver ran over {seconds} s:\n{log_path.read_text()[-4000:]}", pytrace=False)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def trials(sweep_uri: str) -> dict:
    """trial id -> its run's metrics, from the files in storage."""
    from job.run import read_metrics

    ids = {rel.split("/")[0] for rel in storage.list_files(sweep_uri) if rel.endswith("/run/config.json")}
    return {tid: read_metrics(storage.join(sweep_uri, tid, "run")) for tid in ids}


def synced_statuses(sweep_uri: str) -> dict[str, str]:
    """trial id -> its status in the newest experiment state Tune synced to storage (what a
    restored driver starts from: Tune's `experiment_state-<time>.json`, one JSON state per trial)."""
    states = sorted(rel for rel in storage.list_files(sweep_uri)
                    if "/" not in rel and rel.startswith("experiment_state-") and rel.endswith(".json"))
    if not states:
        return {}
    data = json.loads(storage.read_bytes(storage.join(sweep_uri, states[-1])))
    trials = [json.loads(state) for state, _runtime in data["trial_data"]]
    return {trial["trial_id"]: trial["status"] for trial in trials}


def ray_results(sweep_uri: str, trial_id: str) -> list[dict]:
    """What Ray recorded of a trial: one dict per `tune.report`, in its result.json."""
    text = storage.read_bytes(storage.join(sweep_uri, trial_id, "result.json")).decode()
    return [json.loads(line) for line in text.splitlines()]


def parse(*argv: str) -> argparse.Namespace:
    """`covidct ...` with the tune subcommands plugged in, as job.cli does for its entry points."""
    from tune import cli

    parser = argparse.ArgumentParser(prog="covidct")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_sweep(sub)
    cli.add_best(sub)
    return parser.parse_args(argv)


def sweep_refused(capsys, *argv, exit_code=2, name="bad") -> str:
    """`python -m tune ARGS` (the one main, as `tune/__main__.py` calls it) refuses ARGS with one
    line and the contract's exit code (2 = will fail again, 1 = may succeed on retry); the line."""
    from job import cli as job_cli

    named = ("--name", name) if name else ()
    code = job_cli.main(["sweep", "--preset", "smoke", *named, *argv], prog="python -m tune")
    captured = capsys.readouterr()
    assert code == exit_code, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m tune: error: "), captured.err
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


def space_file(folder: Path, space: dict) -> str:
    path = folder / "space.json"
    path.write_text(json.dumps(space))
    return str(path)
