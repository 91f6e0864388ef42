"""Population-based training: a space PBT can run (only fields a run may change on resume), the
values it can move a field to, and a real PBT sweep on the package's Ray cluster in which a trial
exploits another: it takes the other's checkpoint and settings and its run records them."""

import json

import pytest

from job import storage
from job.config import resolve
from job.errors import ConfigError
from tests.tune.conftest import driver, finish, ray_results, space_file, sweep_refused
from tune import pbt, space as spaces


def test_pbt_refuses_a_space_that_varies_what_a_run_cannot_change(tmp_path, capsys):
    # The default space's depths: an exploit would hand a trial another model's checkpoint.
    space = space_file(tmp_path, {"g_lr": {"loguniform": [1e-5, 1e-3]}, "g_depth": [3, 5],
                                  "activation": "relu"})  # one value: not varied, allowed
    storage_dir = tmp_path / "sweeps"
    message = sweep_refused(capsys, "--scheduler", "pbt", "--space", space, "--storage", str(storage_dir))
    assert "config field 'g_depth': PBT cannot search it" in message and "--scheduler asha" in message
    assert not storage_dir.exists()


def test_the_default_space_under_pbt_keeps_the_fields_a_run_may_change():
    base = resolve("smoke")
    population = pbt.population_space(spaces.default_space(base, replicas=1, train_images=28))
    assert set(population) == {"g_lr", "d_lr", "global_batch_size", "augment"}
    pbt.check_space(population)
    with pytest.raises(ConfigError, match="'dropout': PBT cannot"):
        pbt.check_space(spaces.parse_space({"dropout": [0.0, 0.1]}))


def test_pbt_moves_a_field_only_to_values_the_space_checked():
    space = spaces.parse_space({"g_lr": {"loguniform": [1e-5, 1e-3]}, "d_lr": {"same_as": "g_lr"},
                                "global_batch_size": {"randint": [8, 11]}, "augment": ["", "translation"]})
    mutations = pbt.mutations(space)
    assert mutations["global_batch_size"] == [8, 9, 10] and mutations["augment"] == ["", "translation"]
    assert "d_lr" not in mutations  # tied: it follows g_lr
    explore = pbt.Explore.of(space)
    # Ray scales a range by 1.2 without clipping it: back to the bound, and d_lr follows.
    assert explore({"g_lr": 1.2e-3, "d_lr": 1e-3, "global_batch_size": 8}) == {
        "g_lr": 1e-3, "d_lr": 1e-3, "global_batch_size": 8}
    assert explore({"g_lr": 8e-6, "d_lr": 1.0, "global_batch_size": 9})["d_lr"] == 1e-5


@pytest.mark.heavy
def test_a_pbt_sweep_exploits_a_trial_with_the_default_space(ray_cluster, demo_data, tmp_path):
    # The default space under PBT, two trials of 3 epochs perturbed every epoch: whenever the
    # weaker one reports after the stronger, it takes the other's checkpoint and settings.
    storage_dir = tmp_path / "sweeps"
    log_path = tmp_path / "driver.log"
    argv = ["--preset", "smoke", "--epochs", "3", "--scheduler", "pbt", "--grace-period", "1",
            "--num-samples", "2", "--gpus-per-trial", "0", "--cpus-per-trial", "1",
            "--max-concurrent-trials", "2", "--name", "pbt", "--storage", str(storage_dir),
            "--data-dir", demo_data]
    code = finish(driver(ray_cluster, argv, log_path), log_path)
    printed = log_path.read_text()
    assert code == 0, printed[-6000:]
    assert "PBT on" in printed and "TypeError" not in printed
    assert _tracebacks_but_ray_teardown(printed) == [], printed[-6000:]
    sweep_uri = str(storage_dir / "pbt")
    # The evidence is the runs' own record: a trial's run notes every resume with new settings
    # (config_history.jsonl). Ray's result.json cannot tell: it is rewritten when PBT restarts a
    # trial, so an exploited trial's may hold only the reports after its last restart.
    exploited = {}
    for tid in {rel.split("/")[0] for rel in storage.list_files(sweep_uri) if rel.endswith("/run/config.json")}:
        assert all(r["config"]["d_lr"] == r["config"]["g_lr"] for r in ray_results(sweep_uri, tid))
        uri = storage.join(sweep_uri, tid, "run", "config_history.jsonl")
        if storage.exists(uri):
            exploited[tid] = [json.loads(line)["changed"] for line in storage.read_bytes(uri).decode().splitlines()]
    assert exploited, "no trial exploited another:\n" + printed[-6000:]
    assert "trial starts from the checkpoint" in printed  # the exploit's restart, by the trial
    for changes in exploited.values():  # each took another's settings as a resume, the tie held
        assert all(set(c) & {"g_lr", "global_batch_size", "augment"} for c in changes), changes
        assert all(c["d_lr"][1] == c["g_lr"][1] for c in changes if "g_lr" in c), changes
    assert "report.md" in storage.list_files(sweep_uri)


def _tracebacks_but_ray_teardown(printed: str) -> list[str]:
    """The tracebacks in a driver's log, less Ray's teardown of a trial it stops to exploit: its
    SIGTERM handler raises SystemExit, and when that lands inside a weakref callback Python prints
    "Exception ignored in: ..." with the traceback, ending in "SystemExit: 1" (seen in the whole
    suite: the trial had ended; the sweep and every exploit were whole)."""
    lines = printed.splitlines()
    found = []
    for i, line in enumerate(lines):
        if "Traceback (most recent call last)" not in line:
            continue
        block = lines[i:i + 12]
        teardown = i > 0 and "Exception ignored in" in lines[i - 1] and any(
            l.rstrip().endswith("SystemExit: 1") for l in block) and any("sigterm_handler" in l for l in block)
        if not teardown:
            found.append("\n".join(block))
    return found

