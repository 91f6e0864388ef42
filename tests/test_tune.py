"""Ray Tune sweeps: the space and plan checks alone, then real sweeps on a real local Ray head.

The heavy tests share one `ray start --head` (127.0.0.1, 2 CPUs, no GPU, token auth disabled,
stopped by its fixture) and the session's GCS emulator: a sweep submitted with `ray job submit`
writes into the bucket, `best` pulls its winner and `generate` draws from it; a sweep interrupted
after its first trial resumes without rerunning that trial; bad input fails before any trial.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image

from job import storage
from job.config import resolve
from job.errors import ConfigError, UserError
from tests.gcs_fixture import free_port
from job import cli as job_cli
from tune import cli, space as spaces
from tune.sweep import Cluster, cluster_from, plan_resources

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HEAD_START_SECONDS = 90
JOB_SECONDS = 240
# Every sweep here: the smoke preset (28x28, 2 epochs, checkpoints and SWD every epoch), two
# trials, and a grace period of the whole run so ASHA never stops a trial of 2 epochs early.
SMOKE = ["--preset", "smoke", "--num-samples", "2", "--grace-period", "2"]


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


# -- a real Ray head, the emulator, demo data ---------------------------------------------------


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
        while not _answers(f"{bucket.endpoint}/storage/v1/b/{bucket.bucket}"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the in-memory GCS emulator did not start:\n{log_path.read_text()}", pytrace=False)
            time.sleep(0.1)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("STORAGE_EMULATOR_HOST", bucket.endpoint)
            yield bucket
    finally:
        process.terminate()
        process.wait(timeout=10)


class Head:
    def __init__(self, address: str, dashboard: str, env: dict):
        self.address, self.dashboard, self.env = address, dashboard, env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def ray_head(memory_bucket):
    """`ray start --head --block` on 127.0.0.1 with its own ports and folder; terminated after.

    --block keeps the command in the foreground, and on SIGTERM it stops the processes it
    started; nothing else on the machine is touched (no `ray stop`).
    """
    folder = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must stay < 108 bytes
    ports = {name: free_port() for name in (
        "port", "dashboard-port", "ray-client-server-port", "node-manager-port",
        "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "metrics-export-port", "runtime-env-agent-port")}
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",  # a token file in ~/.ray would otherwise turn auth on
        "STORAGE_EMULATOR_HOST": memory_bucket.endpoint,  # trials and job drivers inherit it
        "PYTHONPATH": str(REPO),  # drivers joining from this checkout import tune/ and job/
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` of a job = the venv's
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    command = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               "--num-cpus=2", "--num-gpus=0", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", f"--temp-dir={folder}", "--disable-usage-stats",
               "--object-store-memory=268435456"]
    command += [f"--{name}={port}" for name, port in ports.items()]
    log_path = Path(folder) / "head.log"
    head = Head(f"127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['dashboard-port']}", env)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + HEAD_START_SECONDS
        while not _answers(f"{head.dashboard}/api/version"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not come up:\n{log_path.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.5)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAY_AUTH_MODE", "disabled")
            yield head
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own session, by its id
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_driver(ray_head):
    """This test process joined to the head (a sweep run in-process uses it)."""
    import ray

    ray.init(address=ray_head.address, log_to_driver=False)
    yield ray_head
    ray.shutdown()


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """`covidct prepare --demo --config 28` into a folder every Ray process can read."""
    from job.prepare import prepare

    folder = tmp_path_factory.mktemp("tfds")
    prepare("28", str(folder), demo=True)
    return str(folder)


def _trials(sweep_uri: str) -> dict:
    """trial id -> its run's metrics, from the files in storage."""
    from job.run import read_metrics

    ids = {rel.split("/")[0] for rel in storage.list_files(sweep_uri) if rel.endswith("/run/config.json")}
    return {tid: read_metrics(storage.join(sweep_uri, tid, "run")) for tid in ids}


def _parse(*argv: str) -> argparse.Namespace:
    """`covidct ...` with the tune subcommands plugged in, as job.cli does for its entry points."""
    parser = argparse.ArgumentParser(prog="covidct")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_sweep(sub)
    cli.add_best(sub)
    return parser.parse_args(argv)


# -- a sweep submitted as a Ray job --------------------------------------------------------------


@pytest.fixture(scope="module")
def submitted_sweep(ray_head, demo_data, memory_bucket):
    """The README's `ray job submit ... -- python -m tune ...`, run to the end; (sweep URI, logs)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    storage_uri = memory_bucket.uri(f"job-{uuid.uuid4().hex[:8]}")
    job_id = f"covidct-sweep-{uuid.uuid4().hex[:8]}"
    submit = [str(BIN / "ray"), "job", "submit", "--address", ray_head.dashboard,
              "--submission-id", job_id, "--no-wait", "--working-dir", str(REPO), "--",
              "python", "-m", "tune", *SMOKE, "--name", "jobsweep", "--storage", storage_uri,
              "--data-dir", demo_data]
    done = subprocess.run(submit, env=ray_head.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    client = JobSubmissionClient(ray_head.dashboard)
    deadline = time.monotonic() + JOB_SECONDS
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                             JobStatus.STOPPED}:
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            pytest.fail(f"job {job_id} still {status} after {JOB_SECONDS} s:\n"
                        f"{client.get_job_logs(job_id)[-4000:]}")
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-6000:]
    return storage.join(storage_uri, "jobsweep"), logs


@pytest.mark.heavy
def test_ray_job_submit_sweep_writes_every_trial_to_the_bucket(submitted_sweep):
    sweep_uri, logs = submitted_sweep
    assert "sweep 'jobsweep': 2 trials, 2 at a time; ASHA on swd" in logs
    assert re.search(r"global batch 8 \(\d+ steps/epoch\), 16 .* of \d+ images \(28\)", logs)
    trials = _trials(sweep_uri)
    assert len(trials) == 2
    files = storage.list_files(sweep_uri)
    for tid, history in trials.items():
        # The job's own record, and Ray's: each trial reported SWD for both epochs ...
        assert [h["epoch"] for h in history] == [1, 2] and all(h["swd"] > 0 for h in history)
        ray_results = [json.loads(l) for l in storage.read_bytes(storage.join(sweep_uri, tid, "result.json")).decode().splitlines()]
        assert [r["epoch"] for r in ray_results] == [1, 2]
        assert all({"swd", "diversity", "d_real_acc"} <= set(r) for r in ray_results)
        # ... and Ray kept its checkpoints in the bucket, complete ones.
        kept = {rel.split("/")[1] for rel in files if rel.startswith(f"{tid}/checkpoint_") and rel.endswith("/COMPLETE")}
        assert len(kept) == 2, kept
        assert f"trial {tid} finished: swd" in logs
    report = storage.read_bytes(storage.join(sweep_uri, "report.md")).decode()
    best_first = sorted(trials, key=lambda t: min(h["swd"] for h in trials[t]))
    assert report.index(best_first[0]) < report.index(best_first[1])
    assert f"report/{best_first[0]}.png" in report
    assert storage.read_bytes(storage.join(sweep_uri, "report", f"{best_first[0]}.png"))[:4] == b"\x89PNG"


@pytest.mark.heavy
def test_best_downloads_a_checkpoint_generate_turns_into_pngs(submitted_sweep, tmp_path, capsys):
    from job.generate import generate_pngs

    sweep_uri, _ = submitted_sweep
    trials = _trials(sweep_uri)
    winner = min(trials, key=lambda t: min(h["swd"] for h in trials[t]))
    out = tmp_path / "best"
    args = _parse("best", "--sweep", sweep_uri, "--out", str(out))
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert f"best: trial {winner}" in printed and all(t in printed for t in trials)
    best = json.loads((out / "checkpoints" / "best.json").read_text())
    assert best["value"] == min(h["swd"] for h in trials[winner])
    assert (out / "checkpoints" / best["name"] / "COMPLETE").exists()
    assert json.loads((out / "config.json").read_text())["name"] == winner

    pngs = generate_pngs(str(out), str(tmp_path / "pngs"), n=4, checkpoint="best")
    assert len(pngs) == 4
    with Image.open(pngs[0]) as image:
        assert image.size == (28, 28) and image.text["synthetic"] == "true"


# -- resume -----------------------------------------------------------------------------------


@pytest.mark.heavy
def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(
        ray_driver, demo_data, memory_bucket, tmp_path, capsys):
    # Two CPUs per trial on a 2-CPU head: one trial at a time, so the second trial starting
    # means the first has finished.
    storage_uri = memory_bucket.uri(f"resume-{uuid.uuid4().hex[:8]}")
    argv = [*SMOKE, "--name", "resume", "--cpus-per-trial", "2", "--storage", storage_uri,
            "--data-dir", demo_data]
    sweep_uri = storage.join(storage_uri, "resume")
    log_path = tmp_path / "driver.log"
    with open(log_path, "wb") as log:
        driver = subprocess.Popen([sys.executable, "-m", "tune", *argv], cwd=REPO, stdout=log,
                                  stderr=subprocess.STDOUT,
                                  env={**ray_driver.env, "RAY_ADDRESS": ray_driver.address})
    try:
        deadline = time.monotonic() + JOB_SECONDS
        while len(_trials(sweep_uri)) < 2:
            assert driver.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.5)
        driver.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves its state and stops
        assert driver.wait(timeout=90) == 1
    finally:
        if driver.poll() is None:
            driver.kill()
    output = log_path.read_text()
    assert "trial(s) unfinished; run the same command again to resume it" in output
    finished = {t for t, h in _trials(sweep_uri).items() if [e["epoch"] for e in h] == [1, 2]}
    assert len(finished) == 1, output[-4000:]
    (first,) = finished
    first_metrics = storage.read_bytes(storage.join(sweep_uri, first, "run", "metrics.jsonl"))

    args = _parse("sweep", *argv)
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "sweep 'resume' (resuming)" in printed
    trials = _trials(sweep_uri)
    (second,) = set(trials) - {first}
    assert f"trial {second} finished: swd" in printed and f"trial {first} finished" not in printed
    assert [h["epoch"] for h in trials[second]] == [1, 2]
    # Metrics lines carry each epoch's wall time: a rerun would have rewritten them.
    assert storage.read_bytes(storage.join(sweep_uri, first, "run", "metrics.jsonl")) == first_metrics


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
def test_more_gpus_per_trial_than_the_cluster_has_is_refused(ray_driver, demo_data, tmp_path, capsys):
    storage_dir = tmp_path / "sweeps"
    message = _sweep_refused(capsys, "--gpus-per-trial", "1", "--storage", str(storage_dir),
                             "--data-dir", demo_data)
    assert "--gpus-per-trial 1 is more than the Ray cluster has: 0 GPU(s)" in message
    assert not (storage_dir / "bad").exists()
