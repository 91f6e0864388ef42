"""The training job end to end on demo data: outputs, resume, preemption, buckets, bad input.

Runs are the smoke preset on the 28x28 demo phantoms: real models, real MirroredStrategy over two
logical CPUs, real TFDS data, real checkpoints; a few seconds each.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from job import checkpoint_check, cli, storage
from job.config import checks
from job import run as run_layout
from job.checkpoint import CheckpointStore, restore
from job.training.strategy import strategy_for
from job.errors import ConfigError, UserError
from job.generate import generate_pngs
from job.images import read_tags
from job.training.step import build_state
from job.training.loop import fit
from tests.helpers import checkpoint_arrays, lines, smoke

pytestmark = pytest.mark.heavy


def count_validations(monkeypatch) -> list[str]:
    """The names of the configs `validate` checks from now on (however it was imported)."""
    calls, real = [], checks._check_fields
    monkeypatch.setattr(checks, "_check_fields", lambda config: (calls.append(config.name), real(config))[1])
    return calls


def test_two_replica_run_writes_every_output_and_validates_its_config_once(demo_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    validations = count_validations(monkeypatch)
    assert cli.main(["train", "--preset", "smoke", "--run", str(run), "--set", f"data_dir={demo_data}",
                     "--cpu-replicas", "2"]) == 0
    assert validations == ["smoke"]  # where it entered (resolve); fit and the plan trust it
    history = lines(run / run_layout.METRICS)
    final = history[-1]
    assert final["kimg"] > 0 and np.isfinite(final["g_loss"]) and np.isfinite(final["d_loss"])
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["swd"]) and h["swd"] > 0 for h in history)
    assert json.loads((run / run_layout.CONFIG).read_text())["cpu_replicas"] == 2
    listing = run_layout.read_listing(str(run))
    assert [(s.epoch, s.step) for s in listing.checkpoints] == [(1, 0), (2, 0)]
    assert run_layout.read_best(str(run))["name"] in {s.name for s in listing.checkpoints}
    assert listing.sample_epochs == (1, 2)
    assert (run / run_layout.PROGRESS_GIF).exists()
    assert read_tags(run / run_layout.sample_grid(2))["synthetic"] == "true"
    assert any((run / run_layout.EVENTS).iterdir())
    exported = tf.keras.models.load_model(run / run_layout.EXPORT)
    assert exported.output_shape == (None, 28, 28, 1)


def test_a_sweep_trial_validates_its_config_once(demo_data, tmp_path, monkeypatch):
    from tune import trainable

    base = smoke(demo_data, tmp_path).to_dict()
    validations = count_validations(monkeypatch)
    config = trainable.trial_config(base, {"g_lr": 3e-4}, str(tmp_path / "sweep"), "trial_1")
    assert validations == ["trial_1"] and config.g_lr == 3e-4
    assert checks.checked(config) is config and validations == ["trial_1"]  # what fit starts with
    with pytest.raises(ConfigError, match="g_lr"):  # a changed config is a new, unchecked one
        checks.checked(dataclasses.replace(config, g_lr=-1.0))


def test_rerun_resumes_from_the_newest_checkpoint_and_keeps_history(demo_data, tmp_path):
    run = tmp_path / "run"
    fit(smoke(demo_data, run, epochs=1))
    seen = []
    fit(smoke(demo_data, run, epochs=3), callbacks=[seen.append])
    assert [r.epoch for r in seen] == [2, 3]  # epoch 1 was not trained again
    assert [h["epoch"] for h in lines(run / run_layout.METRICS)] == [1, 2, 3]
    assert all(r.checkpoint_dir and pathlib.Path(r.checkpoint_dir).is_dir() for r in seen)


def test_a_resumed_run_uses_the_configured_learning_rates(demo_data, tmp_path):
    run = tmp_path / "run"
    fit(smoke(demo_data, run, epochs=1, g_lr=1e-3, d_lr=1e-3))
    config = smoke(demo_data, run, epochs=2, g_lr=5e-4, d_lr=2e-4)
    fit(config)
    state = build_state(config, strategy_for(0))
    store = CheckpointStore(storage.Mirror(str(run)), keep=3)
    restore(state.checkpoint(), store.fetch(store.latest()))
    assert float(state.g_opt.learning_rate.numpy()) == pytest.approx(5e-4)
    assert float(state.d_opt.learning_rate.numpy()) == pytest.approx(2e-4)


def test_checkpoints_are_pruned_but_the_best_is_kept(demo_data, tmp_path):
    run = tmp_path / "run"
    fit(smoke(demo_data, run, epochs=5, keep_checkpoints=2))
    store = CheckpointStore(storage.Mirror(str(run)), keep=2)
    kept = [s.epoch for s in store.complete()]
    assert kept[-2:] == [4, 5] and len(kept) <= 3
    assert store.best()[0].epoch in kept


def test_non_finite_losses_stop_the_run_and_keep_the_last_good_checkpoint(demo_data, tmp_path):
    run = tmp_path / "run"
    config = smoke(demo_data, run, epochs=1)
    fit(config)
    # Poison the discriminator in the checkpoint the next run resumes from.
    store = CheckpointStore(storage.Mirror(str(run)), keep=3)
    folder = store.fetch(store.latest())
    state = build_state(config, strategy_for(0))
    ckpt = state.checkpoint()
    restore(ckpt, folder)
    kernel = state.discriminator.trainable_variables[0]
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    ckpt.write(str(folder / run_layout.CKPT_PREFIX))
    # Written as the writer would (a NaN it saved itself): the manifest matches the new bytes.
    (folder / run_layout.COMPLETE).write_text(checkpoint_check.marker(folder))
    with pytest.raises(UserError, match=r"non-finite loss in epoch 2 .*epochs 2\.\.2 .*epoch 1"):
        fit(smoke(demo_data, run, epochs=3))
    assert [s.epoch for s in store.complete()] == [1]


def test_generate_writes_tagged_pngs_from_latest_best_or_an_epoch(demo_data, tmp_path):
    run = tmp_path / "run"
    fit(smoke(demo_data, run))
    names = generate_pngs(str(run), str(tmp_path / "out"), n=5, checkpoint="best")
    assert len(names) == 5
    tags = read_tags(tmp_path / "out" / names[0])
    assert tags["synthetic"] == "true" and tags["run"] == str(run) and tags["epoch"] in ("1", "2")
    names = generate_pngs(str(run), str(tmp_path / "out1"), n=3, checkpoint="1")
    assert read_tags(tmp_path / "out1" / names[0])["epoch"] == "1"
    with pytest.raises(UserError, match="no complete checkpoint at epoch 9 .*have: 1, 2"):
        generate_pngs(str(run), str(tmp_path / "out9"), n=1, checkpoint="9")


def test_gcs_round_trip_and_generate_from_the_bucket(demo_data, gcs_prefix, tmp_path):
    fit(smoke(demo_data, gcs_prefix))
    files = storage.list_files(gcs_prefix)
    listing = run_layout.parse_listing(files)
    assert listing.has_config and listing.latest.name == run_layout.checkpoint_name(2, 0)
    assert listing.sample_epochs == (1, 2) and not listing.incomplete
    newest = run_layout.checkpoint_file(listing.latest.name, run_layout.CKPT_PREFIX + ".index")
    for expected in (run_layout.METRICS, newest, run_layout.PROGRESS_GIF, run_layout.EXPORT):
        assert expected in files, expected
    assert any(f.startswith(run_layout.EVENTS + "/") for f in files)
    names = generate_pngs(gcs_prefix, str(tmp_path / "out"), n=2)
    assert read_tags(tmp_path / "out" / names[0])["run"] == gcs_prefix


def test_an_unreachable_bucket_fails_before_training(demo_data, gcs_emulator):
    with pytest.raises(UserError, match="no-such-bucket"):
        fit(smoke(demo_data, "gs://no-such-bucket/run"))


# --- Through the CLI in subprocesses: signals, determinism and outages need their own process.

def covidct(*args, **kw):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "job", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def train_args(demo_data, run, epochs):
    return ["train", "--preset", "smoke", "--run", str(run), "--set", f"data_dir={demo_data}",
            "--set", f"epochs={epochs}", "--set", "deterministic=true", "--cpu-replicas", "2"]


def wait_for(predicate, proc, seconds=180):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended early ({proc.returncode}): {err[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_killed_run_resumes_to_the_same_weights(demo_data, tmp_path):
    # kill -9: at most the epochs since the last checkpoint are lost; history has no duplicates.
    # (SIGTERM at each instant of an epoch: tests/job/test_preemption.py.)
    epochs = 6
    straight = covidct(*train_args(demo_data, tmp_path / "straight", epochs))
    assert straight.wait(timeout=600) == 0, straight.communicate()[1][-2000:]
    run9 = tmp_path / "killed"
    proc = covidct(*train_args(demo_data, run9, epochs))
    wait_for(lambda: len(run_layout.read_listing(str(run9)).checkpoints) >= 2, proc)
    proc.kill()
    proc.wait()
    assert run_layout.read_listing(str(run9)).latest.epoch < epochs
    again = covidct(*train_args(demo_data, run9, epochs), "--takeover")  # its lease outlives it
    assert again.wait(timeout=600) == 0, again.communicate()[1][-2000:]
    assert [h["epoch"] for h in lines(run9 / run_layout.METRICS)] == list(range(1, epochs + 1))

    reference, arrays = checkpoint_arrays(tmp_path / "straight"), checkpoint_arrays(run9)
    assert arrays.keys() == reference.keys()
    for key, value in reference.items():
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)


def test_bucket_outage_mid_run_still_ends_with_a_complete_checkpoint(demo_data, gcs_emulator, gcs_prefix, tmp_path):
    proc = covidct(*train_args(demo_data, gcs_prefix, 8))
    wait_for(lambda: run_layout.read_listing(gcs_prefix).latest is not None, proc)
    gcs_emulator.stop()
    time.sleep(4)
    gcs_emulator.start()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert run_layout.read_listing(gcs_prefix).latest.epoch == 8
    assert [m["epoch"] for m in run_layout.read_metrics(gcs_prefix)] == list(range(1, 9))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "global_batch_size=100000"], "larger than the training set"),
        (["--set", "data_dir=does-not-exist"], "is not prepared in data_dir"),
    ],
)
def test_cli_bad_runs_fail_with_one_clear_message(demo_data, tmp_path, args, message):
    base = ["train", "--preset", "smoke", "--run", str(tmp_path / "r"), "--set", f"data_dir={demo_data}"]
    proc = covidct(*base, *args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2  # will fail again: Kubernetes must not retry it
    assert message in err and "Traceback" not in err
