"""Checkpoint cost per preset, against the grace budget a spot reclaim leaves (worker process).

    python -m bench.checkpoints --preset seed336x504      # one JSON line: bytes, seconds

Builds the preset's full GAN state (G, D, EMA G, both Adams) on this machine's first device and
saves it with the job's own `CheckpointStore` into a local run folder, as the training loop
does before its background upload. The upload to a bucket cannot be measured here (no GCS): the
rows add it at `projection.ASSUMED_GCS_UPLOAD_BYTES_PER_S`, stated as an estimate.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time


def measure(preset: str) -> dict:
    from job import storage
    from job.checkpoint import CheckpointStore
    from job.config import resolve
    from job.training.strategy import one_replica_strategy
    from job.training.step import build_state

    config = resolve(preset)
    state = build_state(config, one_replica_strategy())
    with tempfile.TemporaryDirectory(prefix="covidct-bench-ckpt-") as run_dir:
        store = CheckpointStore(storage.Mirror(run_dir), keep=1)
        t0 = time.perf_counter()
        folder = store.save(state.checkpoint(), 0, 0, {}, background=False)
        seconds = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in pathlib.Path(folder).rglob("*") if f.is_file())
    return {"preset": preset, "bytes": size, "seconds": seconds,
            "grace_seconds": config.grace_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    print(json.dumps(measure(parser.parse_args().preset)))


if __name__ == "__main__":
    main()
