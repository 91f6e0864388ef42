"""The run folder's files other than checkpoints: config.json, metrics.jsonl, TensorBoard events,
sample grids, the progress GIF and the exported generator.

Files are written in a local folder (the run folder itself for a local run URI, scratch space for
gs://) and pushed to the run URI as they change, through the storage module.
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import tempfile

import numpy as np
import tensorflow as tf

from job import samples, storage
from job.config import TrainConfig

METRICS = "metrics.jsonl"
CONFIG = "config.json"
EXPORT = "generator.keras"


def local_run_dir(run_uri: str) -> pathlib.Path:
    """Where a run writes before promoting: the folder itself, or scratch for gs://.

    Scratch honours TMPDIR (the pods mount an emptyDir there on a read-only root).
    """
    if not storage.is_remote(run_uri):
        return pathlib.Path(run_uri)
    key = hashlib.sha256(run_uri.encode()).hexdigest()[:16]
    return pathlib.Path(tempfile.gettempdir()) / "covidct-runs" / key


class RunFiles:
    """Writes one run's outputs locally and mirrors them to the run URI."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.uri = config.resolved_run_uri
        self.remote = storage.is_remote(self.uri)
        self.local = local_run_dir(self.uri)
        self.local.mkdir(parents=True, exist_ok=True)
        self._writer = None

    def _push(self, rel: str) -> None:
        if self.remote:
            data = (self.local / rel).read_bytes()
            storage.write_bytes(storage.join(self.uri, rel), data)

    def write_config(self) -> None:
        (self.local / CONFIG).write_text(json.dumps(self.config.to_dict(), indent=1, sort_keys=True))
        self._push(CONFIG)

    def resume_history(self, epoch: int) -> None:
        """Bring metrics and samples of the first `epoch` epochs back; drop lines past them.

        After a kill -9, metrics.jsonl may hold epochs newer than the checkpoint; those epochs are
        trained again, so their old lines would be duplicates.
        """
        if self.remote:
            for folder in ("samples",):
                if storage.list_files(storage.join(self.uri, folder)):
                    storage.download_dir(storage.join(self.uri, folder), str(self.local / folder))
            if storage.exists(storage.join(self.uri, METRICS)):
                (self.local / METRICS).write_bytes(storage.read_bytes(storage.join(self.uri, METRICS)))
        path = self.local / METRICS
        if path.exists():
            kept = [l for l in path.read_text().splitlines() if l and json.loads(l)["epoch"] <= epoch]
            path.write_text("".join(l + "\n" for l in kept))
            self._push(METRICS)

    def history(self) -> list[dict]:
        path = self.local / METRICS
        return [json.loads(l) for l in path.read_text().splitlines() if l] if path.exists() else []

    def log_metrics(self, epoch: int, metrics: dict) -> None:
        """One JSON line per epoch plus TensorBoard scalars."""
        clean = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in metrics.items()}
        with open(self.local / METRICS, "a") as f:
            f.write(json.dumps({"epoch": epoch, **clean}) + "\n")
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.local / "events"))
        with self._writer.as_default(step=epoch):
            for k, v in clean.items():
                if isinstance(v, float) and math.isfinite(v):
                    tf.summary.scalar(k, v)
        self._writer.flush()
        self._push(METRICS)
        if self.remote:
            storage.upload_dir(str(self.local / "events"), storage.join(self.uri, "events"),
                               self.config.storage_retry_seconds)

    def save_samples(self, epoch: int, images: np.ndarray) -> str:
        """The fixed-noise grid for `epoch`, and the progress GIF of every grid so far."""
        folder = self.local / "samples"
        folder.mkdir(exist_ok=True)
        rel = f"samples/epoch_{epoch:04d}.png"
        tags = {"run": self.uri, "epoch": str(epoch)}
        samples.save_png(samples.grid(images), self.local / rel, synthetic_tags=tags)
        samples.progress_gif(sorted(folder.glob("epoch_*.png")), folder / "progress.gif")
        self._push(rel)
        self._push("samples/progress.gif")
        return rel

    def export(self, generator: tf.keras.Model) -> None:
        generator.save(self.local / EXPORT)
        self._push(EXPORT)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(run_uri: str) -> list[dict]:
    """metrics.jsonl of any run URI, for tools that come after the run (best, evaluate)."""
    uri = storage.join(run_uri, METRICS)
    if not storage.exists(uri):
        return []
    return [json.loads(l) for l in storage.read_bytes(uri).decode().splitlines() if l]


def read_config(run_uri: str) -> TrainConfig:
    from job.config import from_json
    from job.errors import UserError

    uri = storage.join(run_uri, CONFIG)
    if not storage.exists(uri):
        raise UserError(f"{run_uri} is not a run: it has no {CONFIG}")
    return from_json(storage.read_bytes(uri).decode())
