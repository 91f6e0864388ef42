"""The long run survives a real cluster: a preemption at any instant resumes to the same weights.

Deterministic CPU mode on demo data (2 logical CPUs): a straight run is the reference; every other
run is interrupted at a chosen instant (a real SIGTERM at a step index, during an upload, a SIGKILL
with an upload cut off), resumed with the same command, and must end bit-identical to it.

A SIGTERM is bounded whatever the bucket does: with the fault proxy stalling an upload the training
thread waits on, or refusing every request, the process exits 143 within `grace_seconds` (plus
`EXIT_SLACK` for the process to go on a busy 2-core machine), naming the newest complete
checkpoint, and the resume ends bit-identical. Before the bound, each of these ran out a 120 s
upload retry and exited 1.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from job import config as C
from job import run as run_layout
from job import storage
from job.checkpoint import CheckpointStore
from tests.fault_proxy import FaultProxy

pytestmark = pytest.mark.heavy

EPOCHS = 4
STEPS = 5  # per epoch: 85 demo training images // batch 16


def train_args(demo_data, run) -> list[str]:
    return ["train", "--preset", "smoke", "--run", str(run), "--cpu-replicas", "2",
            "--set", f"data_dir={demo_data}", "--set", f"epochs={EPOCHS}",
            "--set", "checkpoint_every_epochs=2", "--set", "deterministic=true"]


def start(args, sigterm_at=(-1, -1), env=None, callback=False) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.preempt_at", str(sigterm_at[0]), str(sigterm_at[1]),
               *(["--callback"] if callback else []), "--", *args]
    return subprocess.Popen(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})


def finish(proc, expected=0) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == expected, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return out + err


def weights(run_uri) -> dict:
    store = CheckpointStore(storage.Mirror(str(run_uri)), keep=3)
    latest = store.latest()
    assert (latest.epoch, latest.step) == (EPOCHS, 0)
    reader = tf.train.load_checkpoint(str(store.fetch(latest) / run_layout.CKPT_PREFIX))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "save_counter" not in k and k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.fixture(scope="module")
def straight(demo_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    finish(start(train_args(demo_data, run)))
    return weights(run)


def assert_same(arrays, reference):
    assert arrays.keys() == reference.keys()
    for key, value in reference.items():
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)


@pytest.mark.parametrize("step, saved", [(0, (1, 1)), (2, (1, 3)), (STEPS - 1, (2, 0))],
                         ids=["first-step", "middle-step", "last-step"])
def test_sigterm_at_any_step_of_an_epoch_resumes_to_the_same_weights(
        demo_data, straight, tmp_path, step, saved):
    run = tmp_path / "run"
    # The signal arrives while step `step` of epoch 1 (the second) runs.
    output = finish(start(train_args(demo_data, run), sigterm_at=(1, step)), expected=143)
    assert "SIGTERM" in output
    latest = run_layout.read_listing(str(run)).latest
    assert (latest.epoch, latest.step) == saved  # the last step finishes its epoch first
    finish(start(train_args(demo_data, run)))
    assert_same(weights(run), straight)
    history = [m["epoch"] for m in run_layout.read_metrics(str(run))]
    assert history == list(range(1, EPOCHS + 1))


def test_sigterm_during_a_bucket_upload_and_sigkill_with_an_upload_cut_off(
        demo_data, straight, gcs_emulator, gcs_prefix):
    with FaultProxy(gcs_emulator.endpoint) as proxy:
        env = {"STORAGE_EMULATOR_HOST": proxy.endpoint}
        # SIGTERM while the epoch-2 checkpoint's marker upload is held: the loop waits for the
        # upload in flight (released below), then exits 143 with it complete.
        proxy.hold(r"e000002-s00000/COMPLETE")
        proc = start(train_args(demo_data, gcs_prefix), env=env)
        deadline = time.time() + 300
        while not proxy.holding:
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        proxy.clear()
        finish(proc, expected=143)
        after_sigterm = run_layout.read_listing(gcs_prefix)
        # The held upload completed; the newest checkpoint is e2-s0 or a fresh one made within
        # the grace budget wherever the signal found the loop.
        assert "e000002-s00000" in {c.name for c in after_sigterm.checkpoints}
        assert not after_sigterm.incomplete

        # SIGKILL while the epoch-4 checkpoint's files are uploaded but its marker is not.
        proxy.hold(r"e000004-s00000/COMPLETE")
        proc = start(train_args(demo_data, gcs_prefix), env=env)
        while not proxy.holding:
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        # Not cleared: a released request would still reach the emulator after the kill.
    cut_off = run_layout.read_listing(gcs_prefix)
    assert "e000004-s00000" in cut_off.incomplete and cut_off.latest == after_sigterm.latest
    output = finish(start(train_args(demo_data, gcs_prefix)))
    assert "pruned 1 incomplete checkpoint" in output
    listing = run_layout.read_listing(gcs_prefix)
    assert listing.latest.epoch == EPOCHS and not listing.incomplete
    assert_same(weights(gcs_prefix), straight)


def test_a_changed_identity_or_a_too_large_batch_exits_2_naming_the_field(demo_data, tmp_path):
    run = tmp_path / "run"
    finish(start([*train_args(demo_data, run), "--set", "epochs=1"]))
    output = finish(start([*train_args(demo_data, run), "--set", "g_filters=16"]), expected=2)
    assert "g_filters 8 -> 16" in output
    output = finish(start([*train_args(demo_data, tmp_path / "r2"),
                           "--set", "global_batch_size=512"]), expected=2)
    assert "larger than the training set" in output
    # A resumable change (more epochs) is allowed and recorded.
    finish(start(train_args(demo_data, run)))
    history = (run / run_layout.CONFIG_HISTORY).read_text().splitlines()
    assert json.loads(history[-1])["changed"]["epochs"] == [1, EPOCHS]


def test_yaml_off_reads_as_the_string_xla_expects(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("xla: off\ndeterministic: yes\n")
    config = C.resolve(config_file=str(path))
    assert config.xla == "off" and config.deterministic is True
    path.write_text("augment: no\n")
    with pytest.raises(C.ConfigError, match="quote it"):
        C.resolve(config_file=str(path))


GRACE = 6.0  # seconds: the bounded-SIGTERM tests' grace_seconds (GKE spot gives ~15 in all)
EXIT_SLACK = 4.0  # seconds past the budget for the process itself to end on a busy machine


def metrics_epochs(run_uri) -> list[int]:
    return [m["epoch"] for m in run_layout.read_metrics(run_uri)]


def sigterm_is_bounded(demo_data, straight, emulator, prefix, fault, ready, callback=False):
    """Train through the fault proxy with `fault(proxy)` applied, send SIGTERM once `ready(proxy)`
    holds, and assert exit 143 within the grace budget naming the newest complete checkpoint;
    then resume with the bucket healthy and assert the weights equal the straight run's."""
    # Uploads retry for 10 minutes: a stall, not a failure, however slow the machine is.
    args = [*train_args(demo_data, prefix), "--set", "checkpoint_every_epochs=1",
            "--set", f"grace_seconds={GRACE}", "--set", "storage_retry_seconds=600"]
    with FaultProxy(emulator.endpoint) as proxy:
        fault(proxy)
        proc = start(args, env={"STORAGE_EMULATOR_HOST": proxy.endpoint}, callback=callback)
        deadline = time.time() + 300
        while not ready(proxy):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=GRACE + EXIT_SLACK)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"still running {GRACE + EXIT_SLACK:.0f} s after SIGTERM:\n{err[-2000:]}")
        seconds = time.monotonic() - sent
    # Held requests were dropped when the proxy closed: nothing abandoned lands later.
    print(f"SIGTERM -> exit {proc.returncode} after {seconds:.1f} s (grace {GRACE:.0f} s)")
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    newest = run_layout.read_listing(prefix).latest
    assert newest is not None and f"resumes from {newest.name}" in out + err, (out + err)[-2000:]
    finish(start(args))
    assert_same(weights(prefix), straight)
    assert metrics_epochs(prefix) == list(range(1, EPOCHS + 1))
    return out + err


def test_sigterm_while_a_save_waits_for_a_stalled_upload_exits_143_in_time(
        demo_data, straight, gcs_emulator, gcs_prefix):
    # Epoch 2's checkpoint upload stalls; epoch 3's save waits for it when the signal comes.
    output = sigterm_is_bounded(
        demo_data, straight, gcs_emulator, gcs_prefix,
        fault=lambda proxy: proxy.hold(r"e000002-s00000/"),
        ready=lambda proxy: proxy.holding and 3 in metrics_epochs(gcs_prefix))
    assert "did not finish within the grace budget" in output


def test_sigterm_while_a_callback_waits_for_a_stalled_upload_exits_143_in_time(
        demo_data, straight, gcs_emulator, gcs_prefix):
    # With a callback (a Tune trial) the loop waits for each checkpoint to be complete before
    # reporting it: epoch 2's stalls, and the signal comes during that wait.
    output = sigterm_is_bounded(
        demo_data, straight, gcs_emulator, gcs_prefix, callback=True,
        fault=lambda proxy: proxy.hold(r"e000002-s00000/"),
        ready=lambda proxy: proxy.holding and 2 in metrics_epochs(gcs_prefix))
    assert "reported epoch 1" in output and "reported epoch 2" not in output


def test_sigterm_while_a_metrics_upload_stalls_exits_143_in_time(
        demo_data, straight, gcs_emulator, gcs_prefix):
    # metrics.jsonl's upload after epoch 2 (its body holds epoch 2's line) stalls between steps.
    sigterm_is_bounded(
        demo_data, straight, gcs_emulator, gcs_prefix,
        fault=lambda proxy: proxy.hold(r'metrics\.jsonl[\s\S]*\{"epoch": 2'),
        ready=lambda proxy: proxy.holding)


def test_sigterm_with_the_bucket_gone_exits_143_in_time(demo_data, straight, gcs_emulator, gcs_prefix):
    # Once epoch 1's checkpoint is complete every request is refused (503, which the client
    # retries), then the signal comes: the preemption path must neither list nor upload unbounded.
    def bucket_goes(proxy) -> bool:
        if not storage.exists(f"{gcs_prefix}/checkpoints/e000001-s00000/COMPLETE"):
            return False
        proxy.deny("*", ".", 503, "service unavailable")
        return True

    sigterm_is_bounded(demo_data, straight, gcs_emulator, gcs_prefix,
                       fault=lambda proxy: None, ready=bucket_goes)
