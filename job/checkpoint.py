"""Checkpoints in the run URI, promoted only when complete.

Layout: `<run>/checkpoints/e000010-s00000/` holds TF checkpoint files and `state.json`; a
`COMPLETE` marker is written last, after every other file is in place (uploaded, for gs://), so a
preemption or crash mid-write leaves a folder that readers ignore. `best.json` names the
checkpoint with the lowest value of the selection metric; it is never pruned.

Checkpoints are `tf.train.Checkpoint` folders written by us, not Ray's Keras helper (which cannot
save a subclassed GAN); the sweep reuses these folders as Ray checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shutil

import tensorflow as tf

from job import storage
from job.errors import UserError

COMPLETE = "COMPLETE"
STATE = "state.json"
BEST = "best.json"
PREFIX = "ckpt"
_NAME = re.compile(r"^e(\d{6})-s(\d{5})$")


def checkpoint_name(epoch: int, step: int) -> str:
    return f"e{epoch:06d}-s{step:05d}"


@dataclasses.dataclass(frozen=True)
class Saved:
    name: str
    epoch: int
    step: int


def parse_name(name: str) -> Saved | None:
    m = _NAME.match(name)
    return Saved(name, int(m.group(1)), int(m.group(2))) if m else None


class CheckpointStore:
    """Checkpoints of one run: written in a local folder, promoted to the run URI.

    For a local run URI the local folder is the run folder itself; for gs:// it is scratch space and
    each checkpoint is uploaded, then marked complete.
    """

    def __init__(self, run_uri: str, local_run_dir: str, keep: int, retry_seconds: float = 120.0):
        self.run_uri = run_uri
        self.uri = storage.join(run_uri, "checkpoints")
        self.local = pathlib.Path(local_run_dir) / "checkpoints"
        self.keep = keep
        self.retry_seconds = retry_seconds

    def complete(self) -> list[Saved]:
        """Every complete checkpoint, oldest first."""
        names = set()
        for rel in storage.list_files(self.uri):
            parts = rel.split("/")
            if len(parts) == 2 and parts[1] == COMPLETE and parse_name(parts[0]):
                names.add(parts[0])
        return sorted((parse_name(n) for n in names), key=lambda s: (s.epoch, s.step))

    def latest(self) -> Saved | None:
        done = self.complete()
        return done[-1] if done else None

    def best(self) -> Saved | None:
        uri = storage.join(self.uri, BEST)
        if not storage.exists(uri):
            return None
        return parse_name(json.loads(storage.read_bytes(uri))["name"])

    def find(self, which: str) -> Saved:
        """`latest`, `best` or an epoch number -> a complete checkpoint, or a UserError saying why not."""
        done = self.complete()
        if not done:
            raise UserError(f"no complete checkpoint in {self.uri}")
        if which == "latest":
            return done[-1]
        if which == "best":
            best = self.best()
            if best is None:
                raise UserError(f"{self.uri} has no best checkpoint yet (no metric was recorded)")
            return best
        if not which.isdigit():
            raise UserError(f"--checkpoint must be latest, best or an epoch number, got {which!r}")
        matches = [s for s in done if s.epoch == int(which) and s.step == 0]
        if not matches:
            epochs = ", ".join(str(s.epoch) for s in done if s.step == 0)
            raise UserError(f"no complete checkpoint at epoch {which} in {self.uri} (have: {epochs})")
        return matches[0]

    def save(self, ckpt: tf.train.Checkpoint, epoch: int, step: int, state: dict) -> pathlib.Path:
        """Write, promote and prune; returns the local folder of the complete checkpoint."""
        name = checkpoint_name(epoch, step)
        local = self.local / name
        if local.exists():
            shutil.rmtree(local)
        local.mkdir(parents=True)
        ckpt.write(str(local / PREFIX))
        (local / STATE).write_text(json.dumps({"epoch": epoch, "step": step, **state}, indent=1))
        if storage.is_remote(self.run_uri):
            storage.upload_dir(str(local), storage.join(self.uri, name), self.retry_seconds)
        # The marker goes last: only now does the checkpoint exist for readers.
        storage.write_bytes(storage.join(self.uri, name, COMPLETE), b"")
        if storage.is_remote(self.run_uri):
            (local / COMPLETE).write_bytes(b"")
        self._prune()
        return local

    def mark_best(self, saved_name: str, metric: str, value: float) -> None:
        storage.write_bytes(
            storage.join(self.uri, BEST),
            json.dumps({"name": saved_name, "metric": metric, "value": value}).encode(),
        )

    def _prune(self) -> None:
        done = self.complete()
        best = self.best()
        for saved in done[: max(len(done) - self.keep, 0)]:
            if best and saved.name == best.name:
                continue
            storage.delete(storage.join(self.uri, saved.name))
            if storage.is_remote(self.run_uri):
                shutil.rmtree(self.local / saved.name, ignore_errors=True)

    def fetch(self, saved: Saved) -> pathlib.Path:
        """A local folder holding the checkpoint (downloaded for gs://)."""
        local = self.local / saved.name
        if not (local / COMPLETE).exists():
            if local.exists():
                shutil.rmtree(local)
            storage.download_dir(storage.join(self.uri, saved.name), str(local))
        return local


def restore(ckpt: tf.train.Checkpoint, folder: str | pathlib.Path, partial: bool = False) -> dict:
    """Load a checkpoint folder into `ckpt`; returns its state.json."""
    folder = pathlib.Path(folder)
    status = ckpt.read(str(folder / PREFIX))
    if partial:
        status.expect_partial()
    else:
        status.assert_existing_objects_matched()
    return json.loads((folder / STATE).read_text())
