"""Ray Tune sweeps: the space and plan checks alone, then real sweeps on a real autoscaling cluster.

The heavy tests share one local Ray cluster started as the KubeRay sweep cluster runs: a head
with 0 CPUs and a worker group at zero that Ray's own autoscaler (fake multi-node provider, every
node on 127.0.0.1) grows for waiting trials (tests/ray_autoscaler.py). Every Ray process reaches
an in-memory GCS emulator through a proxy that refuses bucket-metadata reads with GCS's 403, as
GCS refuses them to the pods' roles/storage.objectUser. A sweep submitted with `ray job submit`
scales the cluster from zero, has one trial diverge (it ends finished, worst score, no retry) and
exits 0; `best` pulls its winner and `generate` draws from it; a driver killed with SIGKILL is
resubmitted and reruns no trial that had finished; bad input fails before any trial.
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from job import run as run_layout, storage
from job.config import resolve
from job.errors import ConfigError, UserError
from job.metrics.registry import SELECTION_METRIC as SELECTION
from tests.fault_proxy import FaultProxy
from tests.helpers import answers
from tests.gcs_fixture import free_port
from tests.ray_autoscaler import AutoscalingCluster
from job import cli as job_cli
from tune import cli, space as spaces
from tune.sweep import (
    STATE_SYNC_SECONDS, Cluster, cluster_from, make_folders, plan_resources, storage_permissions,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JOB_SECONDS = 240
MAX_WORKERS = 2  # the test cluster's worker group: 0..2 nodes of 1 CPU
# Every sweep here: the smoke preset (28x28, 2 epochs, checkpoints and SWD every epoch), two
# trials, and a grace period of the whole run so ASHA never stops a trial early.


# -- the space and the plan, no Ray -----------------------------------------------------------


def test_default_space_for_smoke_only_holds_trainable_values():
    base = resolve("smoke")
    space = spaces.default_space(base, replicas=2, train_images=20)
    assert set(space) == {"activation", "g_lr", "d_lr", "g_depth", "d_depth", "dropout",
                          "global_batch_size", "augment"}
    assert space["d_lr"] == spaces.Dim("same_as", ("g_lr",))
    assert space["g_lr"].args == (1e-5, 1e-3)
    assert space["global_batch_size"].args == (8, 16)  # 32 > 20 images is left out
    configs = spaces.check(space, base, replicas=2)
    assert {c.g_depth for c in configs} == {3, 5} and {c.d_depth for c in configs} == {2, 3, 4}
    assert all(c.d_lr == c.g_lr for c in configs)


def test_space_file_values_take_the_field_types(tmp_path):
    path = tmp_path / "space.yaml"
    # YAML reads 1e-5 as a string; the space coerces it like `--set` would.
    path.write_text("g_lr: {loguniform: [1e-5, 1e-3]}\nd_lr: {same_as: g_lr}\n"
                    "dropout: [0, 0.1]\ng_depth: {grid: [3, 5]}\nepochs: '3'\n")
    space = spaces.load_space(str(path))
    assert space["g_lr"].args == (1e-5, 1e-3) and isinstance(space["g_lr"].args[0], float)
    assert space["dropout"].args == (0.0, 0.1) and space["epochs"] == spaces.Dim("constant", (3,))
    assert spaces.grid_points(space) == 2
    assert len(spaces.check(space, resolve("smoke"), replicas=1)) == 2 * 2 * 2


def test_a_sweep_can_search_the_classes_and_conditioning_and_best_shows_them(tmp_path):
    from tune import best as results

    path = tmp_path / "space.yaml"
    path.write_text("conditional: [true, false]\nlabels: ['', covid]\n")
    space = spaces.load_space(str(path))
    configs = spaces.check(space, resolve("smoke"), replicas=1)
    assert {(c.conditional, c.labels) for c in configs} == {
        (True, ""), (True, "covid"), (False, ""), (False, "covid")}
    with pytest.raises(ConfigError, match="labels"):
        spaces.check(spaces.parse_space({"labels": ["covid", "covid19"]}), resolve("smoke"), replicas=1)
    history = ({"epoch": 2, "swd_holdout": 30.0, "swd_floor": 20.0, "intensity_w1_holdout": 0.3,
                "intensity_w1_floor": 0.1, SELECTION: 3.0},)
    trials = [results.Trial(f"t{i}", f"runs/t{i}", {"name": f"t{i}", "conditional": c.conditional,
                                                  "labels": c.labels, "g_lr": 1e-4}, history, (), ())
              for i, c in enumerate(configs)]
    fields = results.varying_fields(trials)
    assert fields == ["conditional", "labels"]
    kept = run_layout.Saved("e0002-s000000", 2, 0)
    head, _, first, *_ = results.table([results.Ranked(t, 3.0, kept) for t in trials], SELECTION,
                                       fields).splitlines()
    assert head.split(" | ")[-2:] == ["conditional", "labels |"]
    # The hold-out figures over their floors beside the blend: here intensity drives it.
    assert "| 1.5 | 3 |" in first and "| True | '' |" in first


@pytest.mark.parametrize("text, field, words", [
    ("g_learning_rate: [1.0e-4]\n", "g_learning_rate", "unknown field"),
    ("run_uri: [a, b]\n", "run_uri", "cannot be searched"),
    ("g_lr: {loguniform: [0, 1.0e-3]}\n", "g_lr", "bounds"),
    ("d_lr: {same_as: g_lr}\n", "d_lr", "same_as"),
    ("g_depth: {between: [3, 5]}\n", "g_depth", "expected"),
    ("g_depth: {uniform: [3, 7]}\n", "g_depth", "needs a float field"),
])
def test_a_bad_space_file_names_the_field(tmp_path, text, field, words):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        spaces.load_space(str(path))
    assert error.value.field == field and words in str(error.value)


def test_a_value_that_cannot_train_is_refused_with_its_combination():
    space = spaces.parse_space({"g_depth": [3, 2], "dropout": [0.0, 0.1]})
    with pytest.raises(ConfigError) as error:
        spaces.check(space, resolve("smoke"), replicas=1)
    assert error.value.field == "g_depth" and "g_depth=2" in str(error.value)
    batch = spaces.parse_space({"global_batch_size": [16, 6]})
    with pytest.raises(ConfigError, match="not divisible by the 4 replicas"):
        spaces.check(batch, resolve("smoke"), replicas=4)


def test_resources_follow_the_cluster():
    gpus = Cluster(cpus=(16, 16), gpus=(4, 4))
    r = plan_resources(gpus, gpus_per_trial=2, cpus_per_trial=4, cpu_replicas=0, trials=10)
    assert (r.replicas, r.concurrent, r.cpu_replicas) == (2, 4, 0)
    assert plan_resources(gpus, None, 1, 0, trials=3).gpus_per_trial == 1
    cpus = Cluster(cpus=(2,), gpus=(0,))
    r = plan_resources(cpus, None, cpus_per_trial=2, cpu_replicas=0, trials=5)
    assert (r.gpus_per_trial, r.cpu_replicas, r.concurrent) == (0, 2, 1)
    with pytest.raises(UserError, match="4 on its largest node"):
        plan_resources(gpus, 5, 1, 0, trials=1)  # 8 GPUs in all, but a trial spans one node


def test_an_autoscaling_cluster_counts_the_nodes_it_may_add():
    # The KubeRay sweep cluster idles with its head only; its GPU group scales from 0 to 4 nodes.
    head = {"CPU": 4.0}
    idle = cluster_from([head], None, trials=8)
    with pytest.raises(UserError, match="more than the Ray cluster has: 0 GPU"):
        plan_resources(idle, 1, 1, 0, trials=8)
    groups = [(head, 1), ({"CPU": 8.0, "GPU": 1.0}, 4)]
    scaling = cluster_from([head], groups, trials=8)
    r = plan_resources(scaling, 1, 6, 0, trials=8)
    assert scaling.autoscaling and (r.gpus_per_trial, r.concurrent) == (1, 4)
    with pytest.raises(UserError, match="can have, with its autoscaler: 4 GPU"):
        plan_resources(scaling, 2, 6, 0, trials=8)
    unlimited = cluster_from([head], [({"CPU": 8.0, "GPU": 2.0}, -1)], trials=3)
    assert plan_resources(unlimited, 2, 1, 0, trials=3).concurrent == 3


def test_a_cluster_that_grows_trusts_the_explicit_resources():
    # KubeRay's sweep cluster when the sweep starts: a head of 0 CPUs, no worker; Ray 2.60 does
    # not say what the autoscaler may add, --max-concurrent-trials (the manifests' maxReplicas) does.
    idle = cluster_from([{"CPU": 0.0}], None, trials=8, grows_to=4)
    r = plan_resources(idle, 1, 6, 0, trials=8)
    assert (r.gpus_per_trial, r.cpus_per_trial, r.concurrent, r.trusted) == (1, 6, 4, True)
    assert plan_resources(idle, 1, 6, 0, trials=3).concurrent == 3
    with pytest.raises(UserError, match="--gpus-per-trial is needed"):
        plan_resources(idle, None, 6, 0, trials=8)  # GPU or CPU trials: nothing to tell from
    with pytest.raises(UserError, match="--cpus-per-trial >= 1"):
        plan_resources(idle, 1, 0, 0, trials=8)  # never fits anywhere
    # A worker already up that holds a trial: not "trusted", still capped by what it grows to.
    up = cluster_from([{"CPU": 0.0}, {"CPU": 8.0, "GPU": 1.0}], None, trials=8, grows_to=4)
    r = plan_resources(up, None, 6, 0, trials=8)
    assert (r.gpus_per_trial, r.concurrent, r.trusted) == (1, 4, False)
    with pytest.raises(UserError, match="must be positive"):
        cluster_from([], None, trials=8, grows_to=0)


def test_a_cluster_that_cannot_grow_says_how_to_declare_that_it_does():
    head_only = cluster_from([{"CPU": 0.0}], None, trials=2)
    with pytest.raises(UserError, match="more than the largest node .* pass --max-concurrent-trials"):
        plan_resources(head_only, 0, 1, 0, trials=2)


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
        with pytest.raises(UserError) as error, storage_permissions("gs://covidct-test/x/sweeps/third"):
            make_folders(filesystem, f"{prefix}/third")
        assert "the bucket refused storage.objects.create for gs://covidct-test/x/sweeps/third" in str(error.value)
        assert "roles/storage.objectUser" in str(error.value)


def test_a_refused_bucket_metadata_read_names_the_permission_and_the_role():
    with pytest.raises(UserError) as error, storage_permissions("gs://b/sweeps/s"):
        raise PermissionError(f"google::cloud::Status(PERMISSION_DENIED: Permanent error, with a "
                              f"last message of {NO_BUCKETS_GET}")
    assert "refused storage.buckets.get for gs://b/sweeps/s" in str(error.value)
    assert "roles/storage.legacyBucketReader" in str(error.value)


def test_a_diverged_trial_reports_the_worst_value_of_the_selection_metric():
    from job.errors import Diverged
    from job.metrics import registry
    from job.metrics.registry import worst
    from tune.trainable import DIVERGED, diverged_result

    result = diverged_result(Diverged("non-finite loss", epoch=7, last_good_epoch=5))
    assert result["epoch"] == 7 and "epoch 7" in result[DIVERGED] and "epoch 5" in result[DIVERGED]
    for metric in (registry.SELECTION_METRIC, "diversity"):  # lower is better, higher is better
        assert not registry.is_better(metric, worst(metric), 1e30)
        assert not registry.is_better(metric, worst(metric), -1e30)


# -- a real autoscaling Ray cluster, the emulator behind a GCS-like proxy, demo data --------------


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


@pytest.fixture(scope="module")
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


# What GCS answers a service account with roles/storage.objectUser that reads bucket metadata.
BUCKET_METADATA = rf"^/storage/v1/b/{MemoryBucket.bucket}(\?|$)"
NO_BUCKETS_GET = ("covidct@test.iam.gserviceaccount.com does not have storage.buckets.get access "
                  "to the Google Cloud Storage bucket. Permission 'storage.buckets.get' denied")


@pytest.fixture(scope="module")
def object_user_bucket(memory_bucket):
    """The in-memory emulator behind a proxy that refuses bucket-metadata reads, as GCS refuses
    them to the pods' service account (roles/storage.objectUser has no storage.buckets.get)."""
    with FaultProxy(memory_bucket.endpoint) as proxy:
        proxy.deny("GET", BUCKET_METADATA, 403, NO_BUCKETS_GET)
        yield proxy


@pytest.fixture(scope="module")
def ray_cluster(object_user_bucket):
    """A 0-CPU head whose 1-CPU workers (at most 2) Ray's autoscaler adds from zero; every Ray
    process (job drivers, trials) reaches the bucket through the object-user proxy."""
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


def _driver(cluster: AutoscalingCluster, argv: list[str], log_path: Path) -> subprocess.Popen:
    """`python -m tune ARGV` as a driver on the cluster's head machine (what `ray job submit` runs),
    its output in `log_path`. A separate process: the test process's own Ray would resolve
    127.0.0.1 to the interface address (its ray_constants were read without the loopback switch)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "tune", *argv], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT,
                                env={**cluster.env, "RAY_ADDRESS": cluster.address})


def _trials(sweep_uri: str) -> dict:
    """trial id -> its run's metrics, from the files in storage."""
    from job.run import read_metrics

    ids = {rel.split("/")[0] for rel in storage.list_files(sweep_uri) if rel.endswith("/run/config.json")}
    return {tid: read_metrics(storage.join(sweep_uri, tid, "run")) for tid in ids}


def _ray_results(sweep_uri: str, trial_id: str) -> list[dict]:
    """What Ray recorded of a trial: one dict per `tune.report`, in its result.json."""
    text = storage.read_bytes(storage.join(sweep_uri, trial_id, "result.json")).decode()
    return [json.loads(line) for line in text.splitlines()]


def _parse(*argv: str) -> argparse.Namespace:
    """`covidct ...` with the tune subcommands plugged in, as job.cli does for its entry points."""
    parser = argparse.ArgumentParser(prog="covidct")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_sweep(sub)
    cli.add_best(sub)
    return parser.parse_args(argv)


def _space(tmp_path: Path, space: dict) -> str:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    return str(path)


# -- a sweep submitted as a Ray job: scale from zero, least privilege, a diverging trial ---------


@pytest.fixture(scope="module")
def submitted_sweep(ray_cluster, demo_data, memory_bucket, object_user_bucket, tmp_path_factory):
    """The README's `ray job submit ... -- python -m tune ...` on the autoscaling cluster, run to
    the end; one trial of two is made to diverge (an R1 weight of 1e30). (sweep URI, logs).

    No `--working-dir`: as in the KubeRay image, the project is importable on every node already
    (PYTHONPATH). The fake provider's nodes share one session folder, and a node's runtime-env
    agent deletes an unused working_dir package that another node's processes still run in.
    """
    from ray.job_submission import JobStatus, JobSubmissionClient

    storage_uri = memory_bucket.uri(f"job-{uuid.uuid4().hex[:8]}/sweeps")  # a prefix never seen
    space = _space(tmp_path_factory.mktemp("space"), {"r1_gamma": {"grid": [0.0, 1.0e30]}})
    job_id = f"covidct-sweep-{uuid.uuid4().hex[:8]}"
    submit = [str(BIN / "ray"), "job", "submit", "--address", ray_cluster.dashboard,
              "--submission-id", job_id, "--no-wait", "--",
              "python", "-m", "tune", "--preset", "smoke", "--set", "norm=none",  # R1 needs it
              "--num-samples", "1", "--grace-period", "2", "--space", space, "--gpus-per-trial", "0", "--cpus-per-trial", "1",
              "--max-concurrent-trials", str(MAX_WORKERS), "--name", "jobsweep",
              "--storage", storage_uri, "--data-dir", demo_data]
    done = subprocess.run(submit, env=ray_cluster.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    client = JobSubmissionClient(ray_cluster.dashboard)
    deadline = time.monotonic() + JOB_SECONDS
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                             JobStatus.STOPPED}:
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            pytest.fail(f"job {job_id} still {status} after {JOB_SECONDS} s:\n"
                        f"{client.get_job_logs(job_id)[-4000:]}")
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-6000:]  # exit 0 although a trial diverged
    return storage.join(storage_uri, "jobsweep"), logs


def _diverged_and_good(sweep_uri: str) -> tuple[str, str]:
    configs = {tid: json.loads(storage.read_bytes(storage.join(sweep_uri, tid, "run", "config.json")))
               for tid in _trials(sweep_uri)}
    (diverged,) = [t for t, c in configs.items() if c["r1_gamma"] > 1]
    (good,) = set(configs) - {diverged}
    return diverged, good


@pytest.mark.heavy
def test_a_sweep_on_a_cluster_scaled_from_zero_runs_its_trials(submitted_sweep, ray_cluster):
    sweep_uri, logs = submitted_sweep
    # Nothing could run when the plan was made (a 0-CPU head, no worker): the plan trusted the
    # explicit per-trial resources, and Ray's autoscaler started the workers for the waiting trials.
    assert (f"sweep 'jobsweep': 2 trials, {MAX_WORKERS} at a time once the autoscaler has added "
            f"nodes; ASHA on {SELECTION}") in logs
    assert "per trial: 1 CPU(s), 1 CPU replica(s) (as given: no node has them yet" in logs
    assert re.search(r"Adding \d node\(s\) of type cpu1", ray_cluster.monitor_log())
    assert re.search(r"global batch 16 \(\d+ steps/epoch\) of \d+ images \(28\)", logs)
    diverged, good = _diverged_and_good(sweep_uri)
    trials = _trials(sweep_uri)
    # The job's own record and Ray's: the good trial reported SWD for both epochs ...
    assert [h["epoch"] for h in trials[good]] == [1, 2] and all(h["swd"] > 0 and h[SELECTION] > 0 for h in trials[good])
    assert [r["epoch"] for r in _ray_results(sweep_uri, good)] == [1, 2]
    assert all({SELECTION, "swd", "diversity", "d_real_acc"} <= set(r) for r in _ray_results(sweep_uri, good))
    # ... and the trial's checkpoints are the job's own, in its run folder (what a restarted trial
    # resumes from); under ASHA Ray keeps no copies that its pruning could race.
    files = storage.list_files(sweep_uri)
    assert not [rel for rel in files if rel.startswith(f"{good}/checkpoint_")]
    listing = run_layout.parse_listing([rel.split("/run/", 1)[1] for rel in files
                                        if rel.startswith(f"{good}/run/")])
    assert [c.epoch for c in listing.checkpoints][-1] == 2
    assert f"trial {good} finished: {SELECTION}" in logs
    report = storage.read_bytes(storage.join(sweep_uri, "report.md")).decode()
    assert "2 trials: 1 finished, 1 diverged" in report
    table = report[report.index("| # | trial |"):]
    assert table.index(good) < table.index(diverged)  # ranked: measured first, unmeasured last
    assert f"report/{good}.png" in report
    assert storage.read_bytes(storage.join(sweep_uri, "report", f"{good}.png"))[:4] == b"\x89PNG"


@pytest.mark.heavy
def test_the_sweep_never_needed_bucket_metadata(submitted_sweep, object_user_bucket):
    # The proxy refused every bucket-metadata read with GCS's own 403, and the sweep above ran.
    # Ray (pyarrow, whose request has no query) never asked: the folder markers were there before
    # its recursive create_dir could. The job's own asks (google-cloud-storage's, "?projection=")
    # only word a 404's message and take a 403 as "not found".
    sweep_uri, _ = submitted_sweep
    asked = [path for method, path in object_user_bucket.requests
             if method == "GET" and re.search(BUCKET_METADATA, path)]
    assert [path for path in asked if "projection=" not in path] == []
    assert any("jobsweep%2F" in path for _, path in object_user_bucket.requests)  # it did go through


@pytest.mark.heavy
def test_a_diverged_trial_ends_finished_with_the_worst_score_and_is_not_retried(submitted_sweep):
    sweep_uri, logs = submitted_sweep
    diverged, _ = _diverged_and_good(sweep_uri)
    (last,) = _ray_results(sweep_uri, diverged)  # one report: no retry ran it again
    assert last[SELECTION] == math.inf and last["epoch"] == 1
    assert last["diverged"].startswith("non-finite loss in epoch 1")
    assert f"trial {diverged} diverged, ended with the worst {SELECTION} and not retried" in logs
    assert "failed after its retries" not in logs and "errored" not in logs.lower()
    report = storage.read_bytes(storage.join(sweep_uri, "report.md")).decode()
    assert f"| {diverged} | diverged | 1 | non-finite loss in epoch 1" in report


@pytest.mark.heavy
def test_best_downloads_a_checkpoint_generate_turns_into_pngs(submitted_sweep, tmp_path, capsys):
    from job.generate import generate_pngs

    sweep_uri, _ = submitted_sweep
    trials = _trials(sweep_uri)
    _, winner = _diverged_and_good(sweep_uri)
    out = tmp_path / "best"
    args = _parse("best", "--sweep", sweep_uri, "--out", str(out))
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert f"best: trial {winner}" in printed and all(t in printed for t in trials)
    best = json.loads((out / "checkpoints" / "best.json").read_text())
    assert best["value"] == min(h[SELECTION] for h in trials[winner] if SELECTION in h)
    assert (out / "checkpoints" / best["name"] / "COMPLETE").exists()
    assert json.loads((out / "config.json").read_text())["name"] == winner

    pngs = generate_pngs(str(out), str(tmp_path / "pngs"), n=4, checkpoint="best")  # file names
    assert len(pngs) == 4
    with Image.open(tmp_path / "pngs" / pngs[0]) as image:
        assert image.size == (28, 28) and image.text["synthetic"] == "true"


# -- a driver killed mid-sweep ------------------------------------------------------------------


@pytest.mark.heavy
def test_a_killed_driver_reruns_no_trial_finished_before_its_last_state_sync(
        ray_cluster, demo_data, memory_bucket, tmp_path):
    # One trial at a time: a 2-epoch trial, then a 20-epoch one (~40 s: it outlives the wait). The driver is killed (SIGKILL:
    # no chance to save anything) while the second runs, STATE_SYNC_SECONDS + 10 s after the
    # first finished; the same command then finishes the sweep without running the first again.
    storage_uri = memory_bucket.uri(f"kill-{uuid.uuid4().hex[:8]}")
    space = _space(tmp_path, {"epochs": {"grid": [2, 20]}})
    argv = ["--preset", "smoke", "--num-samples", "1", "--grace-period", "20", "--space", space,
            "--gpus-per-trial", "0", "--cpus-per-trial", "1", "--max-concurrent-trials", "1",
            "--name", "killed", "--storage", storage_uri, "--data-dir", demo_data]
    sweep_uri = storage.join(storage_uri, "killed")
    log_path = tmp_path / "driver.log"

    def finished() -> dict:
        done = {}
        for tid, history in _trials(sweep_uri).items():
            config = json.loads(storage.read_bytes(storage.join(sweep_uri, tid, "run", "config.json")))
            if [h["epoch"] for h in history] == list(range(1, config["epochs"] + 1)):
                done[tid] = history
        return done

    driver = _driver(ray_cluster, argv, log_path)
    try:
        deadline = time.monotonic() + JOB_SECONDS
        while not (done := finished()):
            assert driver.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.5)
        time.sleep(STATE_SYNC_SECONDS + 10)
        assert driver.poll() is None, log_path.read_text()[-4000:]
        assert len(finished()) == 1, "the second trial ended before the kill: make it longer"
        driver.kill()  # SIGKILL
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    (first,) = done
    first_metrics = storage.read_bytes(storage.join(sweep_uri, first, "run", "metrics.jsonl"))
    first_results = storage.read_bytes(storage.join(sweep_uri, first, "result.json"))

    log_path.write_text("")
    again = _driver(ray_cluster, argv, log_path)
    try:
        assert again.wait(timeout=JOB_SECONDS) == 0, log_path.read_text()[-4000:]
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
    printed = log_path.read_text()
    assert "sweep 'killed' (resuming)" in printed
    trials = _trials(sweep_uri)
    (second,) = set(trials) - {first}
    assert f"trial {second} finished: {SELECTION}" in printed and f"trial {first} finished" not in printed
    assert [h["epoch"] for h in trials[second]] == list(range(1, 21))
    # Metrics lines carry each epoch's wall time, Ray's results their timestamps: a rerun of the
    # first trial would have rewritten them.
    assert storage.read_bytes(storage.join(sweep_uri, first, "run", "metrics.jsonl")) == first_metrics
    assert storage.read_bytes(storage.join(sweep_uri, first, "result.json")) == first_results


# -- bad input: one message each, before any trial ---------------------------------------------


def _sweep_refused(capsys, *argv, exit_code=2) -> str:
    """`python -m tune ARGS` (the one main, as `tune/__main__.py` calls it) refuses ARGS with the
    contract's exit code: 2 = will fail again, 1 = may succeed on retry."""
    code = job_cli.main(["sweep", "--preset", "smoke", "--name", "bad", *argv], prog="python -m tune")
    captured = capsys.readouterr()
    assert code == exit_code
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m tune: error: "), captured.err
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


def test_unknown_field_in_the_space_file_is_refused(tmp_path, capsys):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"g_learning_rate": {"loguniform": [1e-5, 1e-3]}}))
    storage_dir = tmp_path / "sweeps"
    message = _sweep_refused(capsys, "--space", str(space), "--storage", str(storage_dir))
    assert "'g_learning_rate': unknown field in" in message and "did you mean g_lr" in message
    assert not storage_dir.exists()


def test_unreachable_storage_is_refused(monkeypatch, capsys):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    message = _sweep_refused(capsys, "--storage", "gs://covidct-test/sweeps", exit_code=1)
    assert f"cannot reach gs://covidct-test/sweeps: no answer from http://127.0.0.1:{port}" in message
    assert time.monotonic() - t0 < 30


@pytest.mark.heavy
def test_more_gpus_per_trial_than_the_cluster_has_is_refused(ray_cluster, demo_data, tmp_path):
    # Without --max-concurrent-trials the cluster is what it has now: no GPU anywhere.
    storage_dir = tmp_path / "sweeps"
    log_path = tmp_path / "driver.log"
    driver = _driver(ray_cluster, ["--preset", "smoke", "--name", "bad", "--gpus-per-trial", "1",
                                   "--storage", str(storage_dir), "--data-dir", demo_data], log_path)
    try:
        assert driver.wait(timeout=120) == 2, log_path.read_text()[-4000:]  # will fail again
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    (message,) = [line for line in log_path.read_text().splitlines() if line.startswith("python -m tune: error:")]
    assert "--gpus-per-trial 1 is more than the Ray cluster has: 0 GPU(s)" in message
    assert "pass --max-concurrent-trials" in message  # what to say if the cluster autoscales
    assert "Traceback" not in log_path.read_text()
    assert not (storage_dir / "bad").exists()
