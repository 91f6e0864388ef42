"""The checkpoint protocol of a run, on top of `job.run` (names) and `job.storage` (places).

A checkpoint is a `tf.train.Checkpoint` folder plus `state.json`, written in the run's local
working folder, pushed to the run URI, and only then marked `COMPLETE` (the marker is pushed
last), so a preemption or crash mid-write leaves a folder that readers ignore. `best.json` names
the checkpoint with the best value of the selection metric and keeps that value; it is never
pruned. (big_vision's checkpoint promotion is the model: only this module knows the protocol.)

Checkpoints are written by us, not by Ray's Keras helper (which cannot save a subclassed GAN);
the sweep hands these same folders to Ray as its checkpoints.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import tensorflow as tf

from job import run, storage
from job.errors import UserError
from job.run import Saved


class CheckpointStore:
    """The checkpoints of one run, written through the run's `storage.Mirror`."""

    def __init__(self, mirror: storage.Mirror, keep: int):
        self.mirror = mirror
        self.keep = keep

    @property
    def uri(self) -> str:
        return storage.join(self.mirror.uri, run.CHECKPOINTS)

    def complete(self) -> list[Saved]:
        """Every complete checkpoint, oldest first."""
        return list(run.read_listing(self.mirror.uri).checkpoints)

    def latest(self) -> Saved | None:
        done = self.complete()
        return done[-1] if done else None

    def best(self) -> tuple[Saved, float] | None:
        """(the best checkpoint, its selection-metric value), or None before any was marked."""
        record = run.read_best(self.mirror.uri)
        if record is None:
            return None
        return run.parse_checkpoint_name(record["name"]), float(record["value"])

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
            return best[0]
        if not which.isdigit():
            raise UserError(f"--checkpoint must be latest, best or an epoch number, got {which!r}")
        matches = [s for s in done if s.epoch == int(which) and s.step == 0]
        if not matches:
            epochs = ", ".join(str(s.epoch) for s in done if s.step == 0)
            raise UserError(f"no complete checkpoint at epoch {which} in {self.uri} (have: {epochs})")
        return matches[0]

    def save(self, ckpt: tf.train.Checkpoint, epoch: int, step: int, state: dict) -> pathlib.Path:
        """Write, push, mark complete and prune; returns the local folder of the checkpoint."""
        name = run.checkpoint_name(epoch, step)
        rel = run.checkpoint_dir(name)
        local = self.mirror.path(rel)
        if local.exists():
            shutil.rmtree(local)
        local.mkdir(parents=True)
        ckpt.write(str(local / run.CKPT_PREFIX))
        (local / run.STATE).write_text(json.dumps({"epoch": epoch, "step": step, **state}, indent=1))
        self.mirror.push(rel)
        # The marker goes last: only now does the checkpoint exist for readers.
        (local / run.COMPLETE).write_bytes(b"")
        self.mirror.push(run.checkpoint_file(name, run.COMPLETE))
        self._prune()
        return local

    def mark_best(self, name: str, metric: str, value: float) -> None:
        record = {"name": name, "metric": metric, "value": value}
        storage.write_bytes(storage.join(self.mirror.uri, run.BEST), json.dumps(record).encode())

    def _prune(self) -> None:
        done = self.complete()
        best = self.best()
        for saved in done[: max(len(done) - self.keep, 0)]:
            if best is None or saved.name != best[0].name:
                self.mirror.delete(run.checkpoint_dir(saved.name))

    def fetch(self, saved: Saved) -> pathlib.Path:
        """A local folder holding the complete checkpoint (pulled from the run URI if needed)."""
        rel = run.checkpoint_dir(saved.name)
        if not self.mirror.path(run.checkpoint_file(saved.name, run.COMPLETE)).exists():
            shutil.rmtree(self.mirror.path(rel), ignore_errors=True)
            self.mirror.pull(rel)
        return self.mirror.path(rel)


def restore(ckpt: tf.train.Checkpoint, folder: str | pathlib.Path, partial: bool = False) -> dict:
    """Load a checkpoint folder into `ckpt`; returns its state.json."""
    folder = pathlib.Path(folder)
    status = ckpt.read(str(folder / run.CKPT_PREFIX))
    if partial:
        status.expect_partial()
    else:
        status.assert_existing_objects_matched()
    return json.loads((folder / run.STATE).read_text())
