"""Checkpoints that prove themselves: the manifest in `COMPLETE`, its check, and the fallback
from a checkpoint that fails it (or fails to restore) to the next newest.

`COMPLETE` holds {"files": {name: {"size", "crc32c"}}} of every other file of the checkpoint
(`storage.manifest`); an empty `COMPLETE`, written before it held one, is trusted and only its
restore can set it aside. A StorageError (a place that cannot be reached) is never taken for a
damaged checkpoint: it propagates (exit 1) instead of setting anything aside.
"""

from __future__ import annotations

import json
import logging
import pathlib
import shutil
from typing import Callable, TypeVar

from job import run, storage
from job.errors import UserError
from job.run import Saved

T = TypeVar("T")
log = logging.getLogger("covidct")


class CheckpointCorrupt(UserError):
    """No usable checkpoint where one was asked for: every candidate failed its manifest or its
    restore (exit 2: reading the same files again fails the same way)."""

    exit_code = 2


def marker(folder: pathlib.Path) -> str:
    """The text of `COMPLETE` for the checkpoint files in `folder`."""
    return json.dumps({"files": storage.manifest(folder, leave_out=(run.COMPLETE,))}, indent=1)


def first_usable(candidates: list[Saved], uri: str, load: Callable[[Saved], T]) -> tuple[Saved, T]:
    """(the first of `candidates` that `load` loads, what it returned); each one whose `load`
    raises CheckpointCorrupt or any restore error (TensorFlow's reader raises OpError, IndexError,
    AssertionError...) is set aside with a warning line; a UserError (storage) propagates.

    Raises:
        CheckpointCorrupt (exit 2): none loads; the message lists each one and why.
    """
    failures = []
    for saved in candidates:
        try:
            return saved, load(saved)
        except CheckpointCorrupt as error:
            why = str(error).rpartition(": ")[2]
        except UserError:
            raise  # a place that cannot be reached (StorageError): not the checkpoint's fault
        except Exception as error:  # noqa: BLE001 - TF's reader raises OpError, IndexError, ...
            why = f"it does not restore ({type(error).__name__}: {_first_line(error)})"
        failures.append(set_aside(saved, uri, why))
    raise none_usable(uri, failures)

def unusable(folder: pathlib.Path) -> str | None:
    """Why the checkpoint folder fails its manifest (`COMPLETE`), or None when it holds it."""
    marker = folder / run.COMPLETE
    if not marker.is_file():
        return f"{run.COMPLETE} is missing"
    text = marker.read_text()
    if not text.strip():
        return None  # written before COMPLETE listed the files: trusted, its restore still checks
    try:
        files = json.loads(text)["files"]
    except (ValueError, KeyError, TypeError):
        return f"{run.COMPLETE} does not hold a file list"
    return storage.mismatch(folder, files)


def pull_intact(run_uri: str, candidates: list[Saved], out: pathlib.Path) -> Saved:
    """Download the first of `candidates` (checkpoints of `run_uri`) that holds its manifest into
    `out` in the run-folder layout; the others are set aside with a warning line each.

    Raises:
        CheckpointCorrupt (exit 2): none does.
    """
    failures = []
    for saved in candidates:
        rel = run.checkpoint_dir(saved.name)
        storage.download_dir(storage.join(run_uri, rel), str(out / rel))
        why = unusable(out / rel)
        if why is None:
            return saved
        shutil.rmtree(out / rel, ignore_errors=True)
        failures.append(set_aside(saved, storage.join(run_uri, run.CHECKPOINTS), why))
    raise none_usable(storage.join(run_uri, run.CHECKPOINTS), failures)


def set_aside(saved: Saved, uri: str, why: str) -> str:
    log.warning(f"set aside checkpoint {saved.name} of {uri}: {why}")
    return f"{saved.name}: {why}"


def none_usable(uri: str, failures: list[str]) -> CheckpointCorrupt:
    return CheckpointCorrupt(
        f"no usable checkpoint in {uri} ({'; '.join(failures)}); restore the files from a copy, "
        "or move the checkpoints folder aside to start the run over")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]

