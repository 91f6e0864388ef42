"""A sweep whose trial is itself a Ray Train run of 2 workers (Tune + Train V2), submitted with
`ray job submit` to the package's autoscaling Ray cluster (conftest.py) at zero nodes: it finishes
with one writer, and `covidct best` pulls its checkpoint. A module of its own, so its cluster
starts with no worker (another sweep's nodes idle a minute and would change the plan)."""

import json
import uuid

import pytest
from PIL import Image

from job import storage
from job.metrics.registry import SELECTION_METRIC as SELECTION
from tests.tune.conftest import JOB_SECONDS, parse, ray_results, space_file, submitted, trials as _trials


@pytest.fixture(scope="module")
def group_sweep(ray_cluster, demo_data, memory_bucket, tmp_path_factory):
    """One trial that is itself a 2-worker Ray Train run (Tune + Train V2), submitted with `ray job
    submit` to this module's cluster at zero: the trial needs both 1-CPU nodes, which the
    autoscaler adds. The space holds one value, so the trial is the smoke preset as it is.
    (sweep URI, logs)."""
    storage_uri = memory_bucket.uri(f"group-{uuid.uuid4().hex[:8]}")
    space = space_file(tmp_path_factory.mktemp("space"), {"r1_gamma": {"grid": [0.0]}})
    logs = submitted(ray_cluster, [
        "--preset", "smoke", "--set", "num_workers=2", "--num-samples", "1", "--grace-period", "2",
        "--space", space, "--max-concurrent-trials", "1", "--name", "groupsweep",
        "--storage", storage_uri, "--data-dir", demo_data], 2 * JOB_SECONDS)  # waits for 2 new nodes
    return storage.join(storage_uri, "groupsweep"), logs


@pytest.mark.heavy
def test_a_trial_of_two_workers_finishes_under_ray_job_submit_and_best_pulls_it(
        group_sweep, tmp_path, capsys):
    from job.generate import generate_pngs

    sweep_uri, logs = group_sweep
    assert ("per trial: 2 Ray Train workers x (1 CPU(s), 1 CPU replica(s)), 2 replicas (as given: "
            "no node has them yet") in logs
    assert "devices: 2 replicas in sync, this worker's 1 on /cpu:0 (CPU; no GPU visible)" in logs
    # The group waited for the nodes the autoscaler added, without Ray Train's 60 s give-up
    # (tune.workers.WORKER_START_SECONDS).
    assert "worker group startup timed out" not in logs
    (trial,) = _trials(sweep_uri).items()
    trial_id, history = trial
    # One writer: the run's metrics hold each epoch once (a second writer would add its own lines),
    # and Tune took one report per epoch although every worker reports.
    assert [h["epoch"] for h in history] == [1, 2] and all(h[SELECTION] > 0 for h in history)
    assert [r["epoch"] for r in ray_results(sweep_uri, trial_id)] == [1, 2]
    assert f"trial {trial_id} finished: {SELECTION}" in logs

    out = tmp_path / "best"
    args = parse("best", "--sweep", sweep_uri, "--out", str(out))
    assert args.func(args) == 0
    assert f"best: trial {trial_id}" in capsys.readouterr().out
    best = json.loads((out / "checkpoints" / "best.json").read_text())
    assert best["value"] == min(h[SELECTION] for h in history)
    config = json.loads((out / "config.json").read_text())
    assert config["num_workers"] == 2 and config["name"] == trial_id
    (png,) = generate_pngs(str(out), str(tmp_path / "pngs"), n=1, checkpoint="best")
    with Image.open(tmp_path / "pngs" / png) as image:  # drawn on one process, no group needed
        assert image.size == (28, 28) and image.text["synthetic"] == "true"
