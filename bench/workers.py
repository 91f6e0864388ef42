"""The multi-worker scaling rows (issue 25): one run as 1 worker x 2 CPU replicas against 2 worker
processes x 1 CPU replica on this machine (the same global batch; the workers' collectives go
over loopback gRPC), and the arithmetic that projects the all-reduce to N GPU nodes.

    python -m bench.workers [--epochs 8] [--json FILE]     # ~5 min on 2 CPU cores
    python -m bench --only workers --json FILE              # the same, as a group of the bench

Both arms train the demo preset on the demo phantoms (`covidct prepare --demo`), each in its own
processes, and are timed by the job's own per-epoch images/s (epochs after the first, which
traces). On one machine the two arms share the same cores, so the ratio prices what the worker
group adds (gRPC collectives, two input pipelines, the per-step votes), not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile

from bench.rows import Row, row
from job.config import resolve
from job.training.capacity import capacity

# The projection's assumptions, stated in the rows' notes: GKE's g2-standard-8 (1 L4) egress
# bandwidth (16 Gbit/s) and a ring all-reduce, which moves 2 (N-1)/N of the gradients per node.
NODE_GBIT_PER_S = 16.0
PROJECTED_NODES = (2, 4, 8)
PRESET = "demo"  # what this machine can time
LONG_RUN = "seed336x504"  # what one would spread over GPU nodes (k8s/ray/rayjob/long-run.yaml)
EPOCHS = 8  # per arm: the first traces, the median of the other 7 is the figure


def gradient_bytes(preset: str = PRESET) -> int:
    """float32 bytes all-reduced per step: every trainable parameter of G and D, once."""
    figures = capacity(resolve(preset))
    return 4 * (figures.g_trainable + figures.d_trainable)


def ring_allreduce_seconds(nbytes: int, nodes: int, gbit_per_s: float = NODE_GBIT_PER_S) -> float:
    """Seconds one ring all-reduce of `nbytes` takes on `nodes` nodes at `gbit_per_s` each
    (bandwidth term only: 2 (N-1)/N x bytes per node; Patarasuk & Yuan 2009)."""
    return 2 * (nodes - 1) / nodes * nbytes * 8 / (gbit_per_s * 1e9)


def projected_speedup(nodes: int, split_batch: bool, preset: str = LONG_RUN) -> float:
    """Images/s on `nodes` one-L4 nodes over one such node, for `preset`'s step: the batch of one
    GPU split over the nodes (`split_batch`: the same global batch, each GPU 1/N of the compute),
    or each node a whole one (a global batch N times larger). Step = compute + ring all-reduce,
    not overlapped (MultiWorkerMirroredStrategy reduces after the backward pass); the compute
    is `bench.projection`'s one-L4 estimate from the step's FLOPs."""
    from bench.projection import gpu_seconds_per_step

    config = resolve(preset)
    one = gpu_seconds_per_step(capacity(config).step_flops_per_image * config.global_batch_size)
    step = (one / nodes if split_batch else one) + ring_allreduce_seconds(gradient_bytes(preset), nodes)
    return one / step if split_batch else nodes * one / step


def rows(one_process: float, two_workers: float) -> list[Row]:
    """The rows from the two arms' images/s, and the all-reduce of each step per preset."""
    note = (f"{PRESET} preset, the same global batch; on one machine both arms share the cores, "
            "so the ratio prices the worker group's overhead (loopback gRPC collectives, two input "
            "pipelines, per-step votes)")
    out = [row(f"workers {PRESET}: 2 workers x 1 CPU replica vs 1 worker x 2 (loopback)",
               two_workers, "img/s", reference=one_process, note=note)]
    for preset in (PRESET, LONG_RUN):
        out.append(row(f"workers {preset}: gradients all-reduced per step", gradient_bytes(preset) / 2**20,
                       "MB", better="lower",
                       note="4 bytes per trainable parameter of G and D (job.training.capacity)"))
    nbytes = gradient_bytes(LONG_RUN)
    for nodes in PROJECTED_NODES:
        out.append(row(
            f"workers {LONG_RUN}: projected all-reduce per step on {nodes} GPU nodes",
            1000 * ring_allreduce_seconds(nbytes, nodes), "ms", better="lower",
            note=f"ring all-reduce, 2 (N-1)/N x {nbytes / 2**20:.1f} MB per node at "
                 f"{NODE_GBIT_PER_S:g} Gbit/s (g2-standard-8 egress), bandwidth term only; set "
                 "beside one GPU's step time for the share lost to communication"))
    batch = resolve(LONG_RUN).global_batch_size
    for nodes in PROJECTED_NODES:
        for split in (True, False):
            kind = (f"global batch {batch} split" if split else
                    f"global batch {batch} x {nodes} ({batch} per GPU)")
            out.append(row(
                f"workers {LONG_RUN}: projected speed-up on {nodes} L4 nodes, {kind}",
                projected_speedup(nodes, split), "x 1 node",
                note="estimate: compute (bench.projection's one-L4 step) / N or whole, plus the "
                     "ring all-reduce above, not overlapped; latency and the per-step stop vote "
                     "left out"))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _images_per_second(run: pathlib.Path) -> float:
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(m["images_per_second"] for m in lines[1:])  # the first epoch traces


def measure(epochs: int, folder: pathlib.Path) -> tuple[float, float]:
    """(1 worker x 2 replicas, 2 workers x 1 replica) images/s of the demo preset."""
    repo = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    data = folder / "tfds"
    job = [sys.executable, "-m", "job"]
    subprocess.run([*job, "prepare", "--demo", "--config", "64", "--data-dir", str(data)],
                   env=env, check=True, capture_output=True)
    train = ["train", "--preset", PRESET, "--set", f"data_dir={data}", "--set", f"epochs={epochs}",
             "--set", f"metrics_every_epochs={epochs}", "--set", f"sample_every_epochs={epochs}",
             "--set", f"checkpoint_every_epochs={epochs}"]
    subprocess.run([*job, *train, "--run", str(folder / "one"), "--cpu-replicas", "2"], env=env,
                   check=True, capture_output=True)
    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    workers = [subprocess.Popen(
        [*job, *train, "--run", str(folder / "two"), "--set", "num_workers=2"],
        env={**env, "TF_CONFIG": json.dumps({"cluster": {"worker": addresses},
                                             "task": {"type": "worker", "index": i}})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    for worker in workers:
        if worker.wait() != 0:
            raise RuntimeError(f"a worker failed: {worker.stderr.read().decode()[-2000:]}")
    return _images_per_second(folder / "one"), _images_per_second(folder / "two")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="covidct-bench-workers-") as scratch:
        one, two = measure(args.epochs, pathlib.Path(scratch))
    results = rows(one, two)
    from bench.rows import table, write_json

    print(table(results))
    if args.json:
        write_json(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
