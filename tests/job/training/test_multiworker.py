"""Several training processes as one run (MultiWorkerMirroredStrategy): two real worker
processes on loopback, TF_CONFIG as Ray Train's TensorflowTrainer writes it."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from job import run as run_layout
from tests.gcs_fixture import free_port
from tests.helpers import checkpoint_arrays, lines

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.heavy


def tf_config(addresses: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


def train_group(demo_data: str, run: Path, folder: Path, epochs: int, n: int = 2,
                *sets: str) -> list[subprocess.Popen]:
    """`covidct train` of the smoke preset as `n` worker processes of one group (TF_CONFIG on
    loopback, TMPDIR in `folder`), output in folder/worker<i>.log."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(n)]
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    processes = []
    for index in range(n):
        env = {**os.environ, "TF_CONFIG": tf_config(addresses, index), "TMPDIR": str(folder / "tmp"),
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        with open(folder / f"worker{index}.log", "wb") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "job", *train_args(demo_data, run, epochs), "--set",
                 f"num_workers={n}", *[a for s in sets for a in ("--set", s)]],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    return processes


def train_args(demo_data: str, run: Path, epochs: int) -> list[str]:
    return ["train", "--preset", "smoke", "--run", str(run), "--set", f"data_dir={demo_data}",
            "--set", f"epochs={epochs}", "--set", "deterministic=true"]


def wait_all(processes: list[subprocess.Popen], folder: Path, seconds: float = 400) -> list[int]:
    try:
        return [p.wait(timeout=seconds) for p in processes]
    except subprocess.TimeoutExpired:
        pytest.fail("a worker ran over its time:\n" + "\n".join(
            (folder / f"worker{i}.log").read_text()[-2000:] for i in range(len(processes))))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()


def run_files(run: Path) -> list[str]:
    """The run's files (TensorBoard's event files named by kind: their names hold time and pid)."""
    return sorted(str(p.relative_to(run)).split(".out.tfevents.")[0] for p in run.rglob("*")
                  if p.is_file() and p.name != "LEASE")


EPOCHS = 4


@pytest.fixture(scope="module")
def straight(demo_data, tmp_path_factory) -> Path:
    """The reference: the same run as one process with two CPU replicas."""
    run = tmp_path_factory.mktemp("straight") / "run"
    done = subprocess.run([sys.executable, "-m", "job", *train_args(demo_data, run, EPOCHS),
                           "--cpu-replicas", "2"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def assert_same_run(run: Path, reference: Path, whole_from: int = 1) -> None:
    """`run` trained what `reference` trained, to the summation order's roundoff: the weights,
    and the mean losses of the epochs from `whole_from` on (an epoch resumed mid-way averages
    only its second part)."""
    ours, theirs = lines(run / run_layout.METRICS), lines(reference / run_layout.METRICS)
    assert [m["epoch"] for m in ours] == list(range(1, EPOCHS + 1))  # one writer: no line twice
    for a, b in list(zip(theirs, ours))[whole_from - 1:]:
        for key in ("g_loss", "d_loss", "d_real_acc"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (b["epoch"], key)  # issue 25: 1e-4
    expected, arrays = checkpoint_arrays(reference), checkpoint_arrays(run)
    assert arrays.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(arrays[key], value, rtol=1e-3, atol=1e-3, err_msg=key)


def log_of(folder: Path, index: int) -> str:
    return (folder / f"worker{index}.log").read_text()


@pytest.mark.parametrize("signum, codes", [(signal.SIGKILL, [1, -9]), (signal.SIGTERM, [143, 143])],
                         ids=["sigkill", "sigterm"])
def test_a_group_that_lost_or_stopped_a_worker_resumes_to_the_same_weights(
        demo_data, straight, tmp_path, signum, codes):
    # SIGKILL (a node reclaimed): the chief's next collective fails or times out, it exits 1
    # (retryable). SIGTERM to one worker (a preempted pod): the group stops at the same step,
    # the chief saves, both exit 143. Either way the same command resumes the group.
    run = tmp_path / "group"
    timeout = ["collective_timeout_seconds=30"]
    group = train_group(demo_data, run, tmp_path, EPOCHS, 2, *timeout)
    deadline = time.monotonic() + 300
    while run_layout.read_listing(str(run)).latest is None:
        assert all(p.poll() is None for p in group), [log_of(tmp_path, i)[-2000:] for i in range(2)]
        assert time.monotonic() < deadline, log_of(tmp_path, 0)[-2000:]
        time.sleep(0.1)
    group[1].send_signal(signum)
    assert wait_all(group, tmp_path, seconds=120) == codes, [log_of(tmp_path, i)[-2000:] for i in range(2)]
    chief = log_of(tmp_path, 0)
    assert "Traceback" not in chief
    if signum == signal.SIGKILL:
        assert "a worker of the group stopped answering" in chief
    else:
        assert "SIGTERM" in chief and "SIGTERM" in log_of(tmp_path, 1)
    saved = run_layout.read_listing(str(run)).latest
    assert saved.epoch < EPOCHS
    scratch = set((tmp_path / "tmp").glob("covidct-worker*"))  # a SIGKILLed worker leaves its own
    assert len(scratch) == (1 if signum == signal.SIGKILL else 0)

    codes = wait_all(train_group(demo_data, run, tmp_path, EPOCHS, 2, *timeout), tmp_path)
    assert codes == [0, 0], [log_of(tmp_path, i)[-3000:] for i in range(2)]
    assert f"resumed from {run / 'checkpoints' / saved.name}" in log_of(tmp_path, 0)
    # 2 workers x 1 replica trained what 1 x 2 trains
    assert_same_run(run, straight, whole_from=saved.epoch + (2 if saved.step else 1))
    # Only the chief wrote the run: the files of a one-process run (a TensorBoard event file
    # per attempt); the other worker's scratch folder is gone once it ends.
    assert set(run_files(run)) == set(run_files(straight))
    assert set((tmp_path / "tmp").glob("covidct-worker*")) == scratch


def test_covidct_train_num_workers_runs_a_ray_train_group_that_survives_a_lost_worker(
        demo_data, straight, tmp_path):
    # `covidct train --num-workers 2` starts a local Ray instance (RAY_ADDRESS=local: never the
    # tune tests' cluster), whose TensorflowTrainer starts the two workers and their TF_CONFIG.
    # One worker is SIGKILLed after the first checkpoint (a node reclaimed): the launcher starts
    # a new group, which resumes from the run and ends with the weights of a straight run. The
    # killed group's chief never released its lease: a short one keeps the restart quick.
    import psutil

    run = tmp_path / "ray-group"
    ray_tmp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_ADDRESS": "local", "TF_CPP_MIN_LOG_LEVEL": "3", "RAY_TMPDIR": ray_tmp}
    env.pop("TF_CONFIG", None)
    log_path = tmp_path / "driver.log"
    with open(log_path, "wb") as log:
        driver = subprocess.Popen(
            [sys.executable, "-m", "job", *train_args(demo_data, run, EPOCHS), "--num-workers", "2",
             "--set", "lease_seconds=5", "--set", "lease_wait_seconds=30"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 400
        while run_layout.read_listing(str(run)).latest is None:
            assert driver.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.2)
        workers = [p for p in psutil.Process(driver.pid).children(recursive=True)
                   if "RayTrainWorker" in " ".join(p.cmdline())]
        assert len(workers) == 2, [" ".join(p.cmdline())[:100] for p in workers]
        workers[-1].kill()
        assert driver.wait(timeout=600) == 0, log_path.read_text()[-4000:]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    printed = log_path.read_text()
    assert "the worker group failed (attempt 1 of 6); a new group resumes" in printed, printed[-4000:]
    assert "resumed from" in printed, printed[-4000:]
    assert_same_run(run, straight)
    # Only the chief wrote: the files of a one-process run (a TensorBoard event file per attempt).
    assert set(run_files(run)) == set(run_files(straight))

    # What every worker says will fail again ends the run at once with exit 2, no restart: the
    # same run with another latent size (a changed run identity).
    done = subprocess.run(
        [sys.executable, "-m", "job", *train_args(demo_data, run, EPOCHS + 2), "--num-workers", "2",
         "--set", "latent_dim=16"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    # Ray streams the workers' own tracebacks; the command's last word is its one error line.
    assert done.stderr.strip().splitlines()[-1].startswith("covidct: error: config field 'latent_dim'")
    assert "the worker group failed" not in done.stdout + done.stderr
