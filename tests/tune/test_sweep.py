"""Real sweeps on the package's autoscaling Ray cluster (conftest.py), and a sweep's bad input.

A sweep submitted with `ray job submit` scales the cluster from zero, has one trial diverge (it
ends finished, worst score, no retry) and exits 0; `best` pulls its winner and `generate` draws
from it; a driver killed with SIGKILL is resubmitted and reruns no trial that had finished; bad
input fails before any trial with one line and the contract's exit code.
"""

import json
import math
import re
import time
import uuid

import pytest
from PIL import Image

from job import run as run_layout, storage
from job.errors import ConfigError, Diverged
from job.metrics.registry import SELECTION_METRIC as SELECTION
from tests.gcs_fixture import free_port
from tests.tune.conftest import (
    BUCKET_METADATA, JOB_SECONDS, MAX_WORKERS, driver, finish, parse, ray_results, space_file,
    submitted, sweep_refused, synced_statuses, trials as _trials,
)
# Every sweep here: the smoke preset (28x28, 2 epochs, checkpoints and SWD every epoch), two
# trials, and a grace period of the whole run so ASHA never stops a trial early.


def test_a_trial_that_cannot_succeed_ends_with_the_worst_score_and_its_reason():
    from job.metrics import registry
    from job.metrics.registry import worst
    from tune.trainable import DIVERGED, INVALID, ended_result

    result = ended_result(Diverged("non-finite loss", epoch=7, last_good_epoch=5))
    assert result["epoch"] == 7 and "epoch 7" in result[DIVERGED] and "epoch 5" in result[DIVERGED]
    invalid = ended_result(ConfigError("global_batch_size", "9 is not divisible by the 2 replicas"))
    assert invalid[INVALID].startswith("config field 'global_batch_size': 9 is not divisible")
    assert invalid[SELECTION] == worst(SELECTION) and invalid["epoch"] == 0
    for metric in (registry.SELECTION_METRIC, "diversity"):  # lower is better, higher is better
        assert not registry.is_better(metric, worst(metric), 1e30)
        assert not registry.is_better(metric, worst(metric), -1e30)


# -- a sweep submitted as a Ray job: scale from zero, least privilege, a diverging trial ---------


@pytest.fixture(scope="module")
def submitted_sweep(ray_cluster, demo_data, memory_bucket, object_user_bucket, tmp_path_factory):
    """The README's `ray job submit ... -- python -m tune ...` on the autoscaling cluster, run to
    the end; one trial of two is made to diverge (an R1 weight of 1e30). (sweep URI, logs).

    No `--working-dir`: as in the KubeRay image, the project is importable on every node already
    (PYTHONPATH). The fake provider's nodes share one session folder, and a node's runtime-env
    agent deletes an unused working_dir package that another node's processes still run in.
    """
    storage_uri = memory_bucket.uri(f"job-{uuid.uuid4().hex[:8]}/sweeps")  # a prefix never seen
    space = space_file(tmp_path_factory.mktemp("space"), {"r1_gamma": {"grid": [0.0, 1.0e30]}})
    logs = submitted(ray_cluster, [
        "--preset", "smoke", "--set", "norm=none",  # R1 needs it
        "--num-samples", "1", "--grace-period", "2", "--space", space, "--gpus-per-trial", "0",
        "--cpus-per-trial", "1", "--max-concurrent-trials", str(MAX_WORKERS), "--name", "jobsweep",
        "--storage", storage_uri, "--data-dir", demo_data], JOB_SECONDS)
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
    assert re.search(r"global batch 16 \(\d+ steps/epoch\) of \d+ images \(covid_ct/28\)", logs)
    diverged, good = _diverged_and_good(sweep_uri)
    trials = _trials(sweep_uri)
    # The job's own record and Ray's: the good trial reported SWD for both epochs ...
    assert [h["epoch"] for h in trials[good]] == [1, 2] and all(h["swd"] > 0 and h[SELECTION] > 0 for h in trials[good])
    assert [r["epoch"] for r in ray_results(sweep_uri, good)] == [1, 2]
    assert all({SELECTION, "swd", "diversity", "d_real_acc"} <= set(r) for r in ray_results(sweep_uri, good))
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
    (last,) = ray_results(sweep_uri, diverged)  # one report: no retry ran it again
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
    args = parse("best", "--sweep", sweep_uri, "--out", str(out))
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert f"best: trial {winner}" in printed and all(t in printed for t in trials)
    best = json.loads((out / "checkpoints" / "best.json").read_text())
    assert best["value"] == min(h[SELECTION] for h in trials[winner] if SELECTION in h)
    assert (out / "checkpoints" / best["name"] / "COMPLETE").exists()
    assert json.loads((out / "config.json").read_text())["name"] == winner
    card = (out / "MODEL_CARD.md").read_text()  # the pulled checkpoint comes with its card
    assert f"at `{best['name']}`" in card and "## Figures" in card and "Not for diagnosis" in card

    pngs = generate_pngs(str(out), str(tmp_path / "pngs"), n=4, checkpoint="best")  # file names
    assert len(pngs) == 4
    with Image.open(tmp_path / "pngs" / pngs[0]) as image:
        assert image.size == (28, 28) and image.text["synthetic"] == "true"


# -- a driver killed mid-sweep ------------------------------------------------------------------


@pytest.mark.heavy
def test_a_killed_driver_reruns_no_trial_finished_before_its_last_state_sync(
        ray_cluster, demo_data, memory_bucket, tmp_path):
    # One trial at a time: a 2-epoch trial, then a 20-epoch one (~40 s). The driver is killed
    # (SIGKILL: no chance to save anything) while the second runs, once the experiment state in
    # storage records the first as TERMINATED; the same command then finishes the sweep without
    # running the first again. The kill waits for the synced record, not for a time after the
    # first's last epoch: on a loaded machine the trial's end reaches the state file later.
    storage_uri = memory_bucket.uri(f"kill-{uuid.uuid4().hex[:8]}")
    space = space_file(tmp_path, {"epochs": {"grid": [2, 20]}})
    argv = ["--preset", "smoke", "--num-samples", "1", "--grace-period", "20", "--space", space,
            "--gpus-per-trial", "0", "--cpus-per-trial", "1", "--max-concurrent-trials", "1",
            "--name", "killed", "--storage", storage_uri, "--data-dir", demo_data]
    sweep_uri = storage.join(storage_uri, "killed")
    log_path = tmp_path / "driver.log"

    def terminated() -> set[str]:
        return {tid for tid, status in synced_statuses(sweep_uri).items() if status == "TERMINATED"}

    process = driver(ray_cluster, argv, log_path)
    try:
        deadline = time.monotonic() + JOB_SECONDS
        while not ((done := terminated()) and set(_trials(sweep_uri)) - done):
            assert process.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.5)
        process.kill()  # SIGKILL
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    (first,) = done
    (running,) = set(_trials(sweep_uri)) - done
    assert len(_trials(sweep_uri)[running]) < 20, "the second trial ended before the kill: make it longer"
    (first,) = done
    first_metrics = storage.read_bytes(storage.join(sweep_uri, first, "run", "metrics.jsonl"))

    log_path.write_text("")
    assert finish(driver(ray_cluster, argv, log_path), log_path) == 0, log_path.read_text()[-4000:]
    printed = log_path.read_text()
    assert "sweep 'killed' (resuming)" in printed
    trials = _trials(sweep_uri)
    (second,) = set(trials) - {first}
    assert f"trial {second} finished: {SELECTION}" in printed and f"trial {first} finished" not in printed
    assert [h["epoch"] for h in trials[second]] == list(range(1, 21))
    # Metrics lines carry each epoch's wall time: a rerun of the first trial would have rewritten
    # them. Ray's record of it holds no epoch twice: a rerun finds the run complete and reports
    # its last epoch again. (Ray's copy of result.json in storage may lag the trial's end at the
    # kill, and the resumed driver's sync may complete it, so its bytes are no witness.)
    assert storage.read_bytes(storage.join(sweep_uri, first, "run", "metrics.jsonl")) == first_metrics
    assert [r["epoch"] for r in ray_results(sweep_uri, first)] in ([1], [1, 2])


# -- bad input: one message each, before any trial ---------------------------------------------


def test_unknown_field_in_the_space_file_is_refused(tmp_path, capsys):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"g_learning_rate": {"loguniform": [1e-5, 1e-3]}}))
    storage_dir = tmp_path / "sweeps"
    message = sweep_refused(capsys, "--space", str(space), "--storage", str(storage_dir))
    assert "'g_learning_rate': unknown field in" in message and "did you mean g_lr" in message
    assert not storage_dir.exists()
    # Tune holds one resource request for all trials: the workers are the sweep's, not drawn ...
    space.write_text(json.dumps({"num_workers": [1, 2]}))
    message = sweep_refused(capsys, "--space", str(space), "--storage", str(storage_dir))
    assert "'num_workers': cannot be searched in" in message and "--set num_workers=2" in message
    # ... one value in the space file is the sweep's, as --set would make it: checked as such.
    space.write_text(json.dumps({"num_workers": 2, "g_lr": [1e-4, 2e-4]}))
    message = sweep_refused(capsys, "--space", str(space), "--scheduler", "pbt", "--storage", str(storage_dir))
    assert "--scheduler pbt cannot run trials of 2 workers" in message


@pytest.mark.parametrize("argv, words", [
    (("--name", ".."), "--name: '..' must be a folder name"),
    (("--name", "s", "--num-samples", "0"), "--num-samples must be positive"),
    # A trial of several workers: its resources are the workers' config fields, its scheduler ASHA.
    (("--name", "s", "--set", "num_workers=2", "--gpus-per-trial", "1"),
     "a trial of 2 workers asks per worker: give --set gpus_per_worker=N --set cpus_per_worker=N"),
    (("--name", "s", "--set", "num_workers=2", "--scheduler", "pbt"),
     "--scheduler pbt cannot run trials of 2 workers"),
])
def test_a_usage_error_is_refused_with_exit_2(tmp_path, capsys, argv, words):
    message = sweep_refused(capsys, *argv, "--storage", str(tmp_path / "sweeps"), name=None)
    assert words in message and not (tmp_path / "sweeps").exists()


def test_unreachable_storage_is_refused(monkeypatch, capsys):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    message = sweep_refused(capsys, "--storage", "gs://covidct-test/sweeps", exit_code=1)
    assert f"cannot reach gs://covidct-test/sweeps: no answer from http://127.0.0.1:{port}" in message
    assert time.monotonic() - t0 < 30
