"""The run folder's files other than checkpoints: config.json, metrics.jsonl, TensorBoard events,
sample grids, the progress GIF and the exported generator.

Files are written in the run's local working folder (`storage.Mirror`) and pushed to the run URI
as they change; their names come from `job.run`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import tensorflow as tf

from job import images, run, storage
from job.config import TrainConfig, identity_changes
from job.deadline import Deadline
from job.errors import ConfigError


class RunFiles:
    """Writes one run's outputs locally and mirrors them to the run URI."""

    def __init__(self, config: TrainConfig, deadline: Deadline | None = None):
        self.config = config
        self.uri = config.resolved_run_uri
        self.mirror = storage.Mirror(self.uri, config.storage_retry_seconds)
        # Armed by SIGTERM: the training loop's uploads (metrics, events, samples) end by it.
        self.deadline = deadline or Deadline()
        self._writer = None

    def record_config(self) -> None:
        """Write config.json, the run's identity; on a resume, refuse a changed identity.

        Raises:
            ConfigError (exit 2): the run URI holds a run whose identity fields (models, data,
                precision: `config.identity_changes`) differ from this config. Changes to
                resumable fields (epochs, intervals, learning rates...) are allowed and appended
                to config_history.jsonl.
        """
        uri = storage.join(self.uri, run.CONFIG)
        if storage.exists(uri):
            recorded = json.loads(run.read_config_text(self.uri))
            changed = identity_changes(recorded, self.config)
            if changed:
                fields = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
                raise ConfigError(next(iter(changed)), (
                    f"{self.uri} is a run with other settings ({fields}); these change the "
                    "checkpoint's shapes or the data, so it cannot resume: give another --run, "
                    "or keep the recorded values"))
            now = self.config.to_dict()
            resumed = {k: [recorded.get(k), v] for k, v in now.items() if recorded.get(k, v) != v}
            if resumed:
                self.mirror.pull(run.CONFIG_HISTORY)
                with open(self.mirror.path(run.CONFIG_HISTORY), "a") as f:
                    f.write(json.dumps({"changed": resumed}) + "\n")
                self.mirror.push(run.CONFIG_HISTORY)
        text = json.dumps(self.config.to_dict(), indent=1, sort_keys=True)
        self.mirror.path(run.CONFIG).write_text(text)
        self.mirror.push(run.CONFIG)
        # TensorBoard's Text tab renders markdown: a code block keeps the JSON's layout.
        with self._events().as_default(step=0):
            tf.summary.text("config", "```\n" + text + "\n```")
        self._events().flush()
        self.mirror.push(run.EVENTS)

    def _events(self):
        """The run's one TensorBoard writer (scalars, sample grids, config), made on first use."""
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.mirror.path(run.EVENTS)))
        return self._writer

    def resume_history(self, epoch: int) -> None:
        """Bring metrics and samples of the first `epoch` epochs back; drop lines past them.

        After a kill -9, metrics.jsonl may hold epochs newer than the checkpoint; those epochs are
        trained again, so their old lines would be duplicates.
        """
        self.mirror.pull(run.SAMPLES)
        self.mirror.pull(run.METRICS)
        path = self.mirror.path(run.METRICS)
        if path.exists():
            kept = [m for m in run.parse_metrics(path.read_text()) if m["epoch"] <= epoch]
            path.write_text("".join(json.dumps(m) + "\n" for m in kept))
            self.mirror.push(run.METRICS)

    def log_metrics(self, epoch: int, metrics: dict) -> None:
        """One JSON line per epoch plus TensorBoard scalars."""
        clean = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in metrics.items()}
        with open(self.mirror.path(run.METRICS), "a") as f:
            f.write(json.dumps({"epoch": epoch, **clean}) + "\n")
        with self._events().as_default(step=epoch):
            for k, v in clean.items():
                if isinstance(v, float) and math.isfinite(v):
                    tf.summary.scalar(k, v)
        self._events().flush()
        self._push(run.METRICS, run.EVENTS)

    def save_samples(self, epoch: int, grid_images: np.ndarray,
                     class_names: dict[int, str] | None = None, labels=None) -> str:
        """The fixed-noise grid for `epoch`, and the progress GIF of every grid so far.

        The grid also goes to TensorBoard as the image `samples`; a conditional run (`labels`:
        the class index of each grid image, `class_names`: index -> name) adds one image
        `samples/<class>` per class, so each class's progress can be followed on its own.
        """
        rel = run.sample_grid(epoch)
        tags = {"run": self.uri, "epoch": str(epoch)}
        picture = images.grid(grid_images)
        images.save_png(picture, self.mirror.path(rel), synthetic_tags=tags)
        summaries = {"samples": picture}
        if labels is not None and class_names:
            labels = np.asarray(labels)
            for index, name in class_names.items():
                if np.any(labels == index):
                    summaries[f"samples/{name}"] = images.grid(grid_images[labels == index])
        with self._events().as_default(step=epoch):
            for tag, pic in summaries.items():  # (1, H, W, 1) uint8: TensorBoard's image layout
                tf.summary.image(tag, np.asarray(pic)[None, :, :, None])
        self._events().flush()
        self._push(run.EVENTS)
        listing = run.parse_listing(
            f"{run.SAMPLES}/{p.name}" for p in self.mirror.path(run.SAMPLES).iterdir())
        grids = [self.mirror.path(run.sample_grid(e)) for e in listing.sample_epochs]
        images.progress_gif(grids, self.mirror.path(run.PROGRESS_GIF))
        self._push(rel, run.PROGRESS_GIF)
        return rel

    def _push(self, *rels: str) -> None:
        """Upload `rels` in order, waiting under the deadline (on its worker thread: a stalled
        upload retries for `storage_retry_seconds`, longer than any grace budget).

        Raises:
            DeadlinePassed: SIGTERM's budget ran out first; the uploads are abandoned.
            StorageError: an upload failed beyond its retries (exit 1).
        """
        self.deadline.call(lambda: [self.mirror.push(rel) for rel in rels])

    def export(self, generator: tf.keras.Model) -> None:
        generator.save(self.mirror.path(run.EXPORT))
        self.mirror.push(run.EXPORT)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
