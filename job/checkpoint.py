"""The checkpoint protocol of a run, on top of `job.run` (names) and `job.storage` (places).

A checkpoint is a `tf.train.Checkpoint` folder plus `state.json`. It is written in the run's local
working folder (the step waits only for this), then pushed to the run URI by one background
thread and only then marked `COMPLETE` (the marker goes last), so a preemption, a crash or a
kill mid-upload leaves a folder that readers ignore and the next start prunes. Names are never
reused (`run.next_checkpoint_name`): nothing is ever written under a live marker. `best.json`
names the best checkpoint by the selection metric and keeps its value; it is written only once
that checkpoint is complete, and that checkpoint is never pruned. (big_vision's checkpoint
promotion is the model: only this module knows the protocol.)

What a checkpoint holds is everything the next step depends on: G, D, the EMA generator, both
optimizers (Adam moments, step counts, loss scale), the epoch and the step within it. The step's
random numbers are pure functions of (seed, epoch, example index) (`job.training.data`), so no
RNG state needs saving. The sweep hands these same folders to Ray as its checkpoints.

One writer: a store made with the run's `storage.Lease` checks it before it prunes, saves,
promotes or records the best, so a second process on the same run URI never deletes or marks
what the live writer wrote. Checkpoints prove themselves: `COMPLETE` holds the manifest (each
file's size and CRC32C, `storage.manifest`), and loading (`load`, `fetch`, `pull_intact`) checks
it; a checkpoint that fails the check or does not restore is set aside with one warning line
naming it and why, and the next newest complete one is used. A `COMPLETE` written before it held
a manifest (empty) is trusted; its restore is still tried and fallen back from.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import threading
import time

import tensorflow as tf

from job import checkpoint_check as check
from job import run, storage
from job.checkpoint_check import CheckpointCorrupt, pull_intact, unusable  # noqa: F401 (re-exported)
from job.deadline import Deadline, DeadlinePassed
from job.errors import UsageError
from job.run import Saved


class CheckpointStore:
    """The checkpoints of one run, written through the run's `storage.Mirror`."""

    def __init__(self, mirror: storage.Mirror, keep: int, lease: storage.Lease | None = None,
                 global_batch_size: int | None = None):
        """`lease`: the writer's, checked before every prune, save and promotion (readers and
        tools writing a folder of their own pass none). `global_batch_size` is recorded in each
        state.json: a mid-epoch checkpoint's step counts batches of that size."""
        self.mirror = mirror
        self.keep = keep
        self.lease = lease
        self.global_batch_size = global_batch_size
        self._upload: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.last_write_seconds: float | None = None  # the newest local write
        self.upload_bytes_per_second: float | None = None  # the newest measured upload
        self.last_size_bytes: int | None = None
        # The newest checkpoint this store saw complete (listed, or promoted by its upload
        # thread): what a SIGTERM names without a listing that a dead bucket could hold.
        self.newest_complete: Saved | None = None

    @property
    def uri(self) -> str:
        return storage.join(self.mirror.uri, run.CHECKPOINTS)

    def complete(self) -> list[Saved]:
        """Every complete checkpoint at the run URI, oldest first."""
        done = list(run.read_listing(self.mirror.uri).checkpoints)
        if done:
            self._saw_complete(done[-1])
        return done

    def _saw_complete(self, saved: Saved) -> None:
        if self.newest_complete is None or saved.order > self.newest_complete.order:
            self.newest_complete = saved

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
            raise UsageError(f"no complete checkpoint in {self.uri}")
        if which == "latest":
            return done[-1]
        if which == "best":
            best = self.best()
            if best is None:
                raise UsageError(f"{self.uri} has no best checkpoint yet (no metric was recorded)")
            return best[0]
        if not which.isdigit():
            raise UsageError(f"--checkpoint must be latest, best or an epoch number, got {which!r}")
        matches = [s for s in done if s.epoch == int(which) and s.step == 0]
        if not matches:
            epochs = ", ".join(str(s.epoch) for s in done if s.step == 0)
            raise UsageError(f"no complete checkpoint at epoch {which} in {self.uri} (have: {epochs})")
        return matches[-1]

    def prune_incomplete(self) -> list[str]:
        """Delete checkpoint folders without COMPLETE (a killed writer's); returns their names.

        Call it at start-up only, under the run's lease: one run has one writer.
        """
        self._writer()
        names = list(run.read_listing(self.mirror.uri).incomplete)
        for name in names:
            self.mirror.delete(run.checkpoint_dir(name))
        return names

    # -- writing ----------------------------------------------------------------------------

    @property
    def uploading(self) -> bool:
        return self._upload is not None and self._upload.is_alive()

    def save(self, ckpt: tf.train.Checkpoint, epoch: int, step: int, state: dict,
             best: tuple[str, float] | None = None, background: bool = True,
             deadline: Deadline | None = None) -> pathlib.Path:
        """Write a checkpoint locally and start its upload; returns the local folder.

        Waits for the previous upload first (one at a time, in order). With `best` =
        (metric, value) the checkpoint is marked best once it is complete. `background=False`
        also waits for this upload. Every wait, and the listing that picks the name, ends by
        `deadline` (armed by SIGTERM: `job.deadline`).

        Raises:
            StorageError: this or an earlier upload failed beyond its retries (exit 1); the local
                disk is full (nothing is promoted).
            DeadlinePassed: `deadline` passed while waiting; nothing was written.
            LeaseLost: another writer took the run over.
        """
        self._writer()
        if not self.wait(deadline=deadline):
            raise DeadlinePassed(f"the previous checkpoint upload did not finish in time ({self.uri})")
        listing = (deadline.call(run.read_listing, self.mirror.uri) if deadline
                   else run.read_listing(self.mirror.uri))
        if listing.checkpoints:
            self._saw_complete(listing.checkpoints[-1])
        existing = {p.name for p in self.mirror.path(run.CHECKPOINTS).glob("*")}
        existing |= {s.name for s in listing.checkpoints} | set(listing.incomplete)
        name = run.next_checkpoint_name(existing, epoch, step)
        local = self.mirror.path(run.checkpoint_dir(name))
        t0 = time.perf_counter()
        stamp = {} if self.global_batch_size is None else {"global_batch_size": self.global_batch_size}
        try:
            local.mkdir(parents=True)
            ckpt.write(str(local / run.CKPT_PREFIX))
            (local / run.STATE).write_text(json.dumps({"epoch": epoch, "step": step, **stamp, **state},
                                                      indent=1))
        except (tf.errors.OpError, OSError) as error:  # a full disk, a quota (ENOSPC, EFBIG, EDQUOT)
            shutil.rmtree(local, ignore_errors=True)  # never promoted; give the space back
            why = error.message if isinstance(error, tf.errors.OpError) else error.strerror or error
            raise storage.StorageError(
                f"cannot write checkpoint {name} in {local.parent}: {str(why).splitlines()[0]}; "
                "nothing was promoted (free space on that disk or give the run a larger volume, "
                "then run the same command to resume)") from None
        self.last_write_seconds = time.perf_counter() - t0
        self._upload = threading.Thread(target=self._promote, args=(name, best), daemon=True,
                                        name=f"checkpoint-upload-{name}")
        self._upload.start()
        if not background and not self.wait(deadline=deadline):
            raise DeadlinePassed(f"the upload of {name} did not finish in time ({self.uri})")
        return local

    def wait(self, timeout: float | None = None, deadline: Deadline | None = None) -> bool:
        """Wait for the upload in flight until it ends, `timeout` s pass or `deadline` passes;
        True when none is left. Re-raises an upload's failure."""
        if self._upload is not None:
            if not (deadline or Deadline()).join(self._upload, timeout):
                return False
            self._upload = None
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return True

    def settle(self, timeout: float, deadline: Deadline | None = None) -> None:
        """Wait up to `timeout` (and `deadline`) for the upload in flight, ignoring its failure
        (on an error path)."""
        try:
            self.wait(timeout, deadline)
        except Exception:  # the caller is already failing with an error of its own
            pass

    def seconds_to_save(self, size_bytes: int) -> float | None:
        """Estimated seconds for a fresh checkpoint to be complete at the run URI (None: unknown)."""
        if self.last_write_seconds is None:
            return None
        upload = 0.0 if self.upload_bytes_per_second is None else size_bytes / self.upload_bytes_per_second
        return self.last_write_seconds + upload

    def _promote(self, name: str, best: tuple[str, float] | None) -> None:
        """Upload, mark complete, record best, prune (the background thread's whole job)."""
        try:
            rel = run.checkpoint_dir(name)
            size = sum(f.stat().st_size for f in self.mirror.path(rel).rglob("*") if f.is_file())
            self.last_size_bytes = size
            t0 = time.perf_counter()
            marker = check.marker(self.mirror.path(rel))  # of the files as written here
            self.mirror.push(rel)
            self._writer()
            self.mirror.path(run.checkpoint_file(name, run.COMPLETE)).write_text(marker)
            self.mirror.push(run.checkpoint_file(name, run.COMPLETE))  # last: now it exists
            self._saw_complete(run.parse_checkpoint_name(name))
            seconds = time.perf_counter() - t0
            if seconds > 0.05:  # a local run "uploads" in no time: nothing to measure
                self.upload_bytes_per_second = size / seconds
            self._writer()
            if best is not None:
                self.mark_best(name, *best)
            self._prune()
        except BaseException as error:  # handed to the training thread by wait()
            self._failure = error

    def mark_best(self, name: str, metric: str, value: float) -> None:
        record = {"name": name, "metric": metric, "value": value}
        storage.write_bytes(storage.join(self.mirror.uri, run.BEST), json.dumps(record).encode())

    def _prune(self) -> None:
        done = self.complete()
        best = self.best()
        for saved in done[: max(len(done) - self.keep, 0)]:
            if best is None or saved.name != best[0].name:
                self.mirror.delete(run.checkpoint_dir(saved.name))

    def _writer(self) -> None:
        if self.lease is not None:
            self.lease.check()

    def fetch(self, saved: Saved) -> pathlib.Path:
        """A local folder holding the complete checkpoint, checked against its manifest.

        From a bucket, the local copy is synced first (only files whose size or CRC32C differ
        from the bucket's are downloaded).

        Raises:
            CheckpointCorrupt: a file is missing or differs from the manifest.
        """
        rel = run.checkpoint_dir(saved.name)
        self.mirror.pull(rel)
        why = unusable(self.mirror.path(rel))
        if why is not None:
            raise CheckpointCorrupt(f"checkpoint {saved.name} of {self.uri}: {why}")
        return self.mirror.path(rel)

    def load(self, which: str, restore_into) -> tuple[Saved, dict]:
        """The checkpoint `which` names (`find`), restored by `restore_into(folder) -> state`.

        One that fails its manifest or its restore is set aside (one warning line naming it and
        why) and the next newest complete checkpoint before it is tried.

        Raises:
            UserError: no checkpoint matches `which` (`find`).
            CheckpointCorrupt (exit 2): none of the candidates loads.
        """
        chosen = self.find(which)
        candidates = [chosen] + [s for s in reversed(self.complete()) if s.order < chosen.order]
        return check.first_usable(candidates, self.uri, lambda saved: restore_into(self.fetch(saved)))


def restore(ckpt: tf.train.Checkpoint, folder: str | pathlib.Path, partial: bool = False) -> dict:
    """Load a checkpoint folder into `ckpt`; returns its state.json."""
    folder = pathlib.Path(folder)
    status = ckpt.read(str(folder / run.CKPT_PREFIX))
    if partial:
        status.expect_partial()
    else:
        status.assert_existing_objects_matched()
    return json.loads((folder / run.STATE).read_text())
