"""The run folder's layout and its pure parsers: the one place these names are spelled.

    <run>/config.json                     the run's TrainConfig (its identity)
    <run>/config_history.jsonl            fields changed on resume, one line per resume
    <run>/metrics.jsonl                   one JSON line per epoch
    <run>/events/                         TensorBoard event files
    <run>/samples/epoch_0010.png          the fixed-noise grid after epoch 10; progress.gif
    <run>/checkpoints/e000010-s00000/     a checkpoint: TF files, state.json, COMPLETE (written last);
                                          e000010-s00000-r2/ when that point was saved before
                                          (names are never reused: no write under a live marker)
    <run>/checkpoints/best.json           {"name", "metric", "value"} of the best checkpoint
    <run>/generator.keras                 the exported EMA generator
    <run>/LEASE                           {"owner", "expires", ...}: the one writer's lease
                                          (`job.storage.lease`); .LEASE.lock guards it locally

Everything here is pure (names in, names out) except the `read_*` functions at the bottom, which
read a run URI through `job.storage`. Checkpoints, the sample writer, `covidct best`, the sweep
report and the tests use these names and parsers; none spells a path of its own.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Iterable

from job import storage
from job.errors import UsageError, UserError

CONFIG = "config.json"
CONFIG_HISTORY = "config_history.jsonl"
METRICS = "metrics.jsonl"
EVENTS = "events"
SAMPLES = "samples"
PROGRESS_GIF = f"{SAMPLES}/progress.gif"
EXPORT = "generator.keras"
CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"  # a checkpoint exists for readers only once this marker does
STATE = "state.json"  # inside a checkpoint: epoch, step, reason, metrics
CKPT_PREFIX = "ckpt"  # tf.train.Checkpoint file prefix inside a checkpoint folder
BEST = f"{CHECKPOINTS}/best.json"
LEASE = "LEASE"  # the writer's lease object (job.storage.lease)

_CHECKPOINT_NAME = re.compile(r"^e(\d{6})-s(\d{5})(?:-r(\d+))?$")
_SAMPLE_NAME = re.compile(r"^epoch_(\d{4,})\.png$")


@dataclasses.dataclass(frozen=True)
class Saved:
    """A checkpoint by name: `epoch` completed epochs plus `step` steps of the next one; a later
    save of the same point (a resume that trained it again) has a higher `revision`."""

    name: str
    epoch: int
    step: int
    revision: int = 0

    @property
    def order(self) -> tuple[int, int, int]:
        return self.epoch, self.step, self.revision


def checkpoint_name(epoch: int, step: int, revision: int = 0) -> str:
    return f"e{epoch:06d}-s{step:05d}" + (f"-r{revision}" if revision else "")


def parse_checkpoint_name(name: str) -> Saved | None:
    m = _CHECKPOINT_NAME.match(name)
    if not m:
        return None
    return Saved(name, int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def next_checkpoint_name(existing: Iterable[str], epoch: int, step: int) -> str:
    """The name for a new checkpoint at (epoch, step): never one already used, complete or not."""
    taken = {s.revision for s in map(parse_checkpoint_name, existing)
             if s is not None and (s.epoch, s.step) == (epoch, step)}
    return checkpoint_name(epoch, step, max(taken) + 1 if taken else 0)


def checkpoint_dir(name: str) -> str:
    return f"{CHECKPOINTS}/{name}"


def checkpoint_file(name: str, file: str) -> str:
    return f"{CHECKPOINTS}/{name}/{file}"


def sample_grid(epoch: int) -> str:
    return f"{SAMPLES}/epoch_{epoch:04d}.png"


@dataclasses.dataclass(frozen=True)
class Listing:
    """What a run folder's file listing says: complete checkpoints and sample epochs."""

    has_config: bool
    checkpoints: tuple[Saved, ...]  # complete ones, oldest first
    incomplete: tuple[str, ...]  # checkpoint folders without COMPLETE (cut-off writes)
    sample_epochs: tuple[int, ...]

    @property
    def latest(self) -> Saved | None:
        return self.checkpoints[-1] if self.checkpoints else None


def parse_listing(files: Iterable[str]) -> Listing:
    """Parse `/`-separated paths relative to a run folder (what `storage.list_files` returns)."""
    complete, seen, epochs, has_config = set(), set(), set(), False
    for rel in files:
        parts = rel.split("/")
        if parts == [CONFIG]:
            has_config = True
        elif len(parts) == 3 and parts[0] == CHECKPOINTS and parse_checkpoint_name(parts[1]):
            seen.add(parts[1])
            if parts[2] == COMPLETE:
                complete.add(parts[1])
        elif len(parts) == 2 and parts[0] == SAMPLES and (m := _SAMPLE_NAME.match(parts[1])):
            epochs.add(int(m.group(1)))
    saved = sorted((parse_checkpoint_name(n) for n in complete), key=lambda s: s.order)
    return Listing(has_config, tuple(saved), tuple(sorted(seen - complete)), tuple(sorted(epochs)))


def parse_metrics(text: str) -> list[dict]:
    """metrics.jsonl -> one dict per epoch, in file order."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- reading a run URI ----------------------------------------------------------------------------


def read_listing(run_uri: str) -> Listing:
    return parse_listing(storage.list_files(run_uri))


def read_metrics(run_uri: str) -> list[dict]:
    """metrics.jsonl of any run URI, for tools that come after the run (best, evaluate)."""
    uri = storage.join(run_uri, METRICS)
    return parse_metrics(storage.read_bytes(uri).decode()) if storage.exists(uri) else []


class BadRunFile(UserError):
    """A run's own file cannot be parsed (a hand edit): reading it again fails the same way."""

    exit_code = 2


def read_config_text(run_uri: str) -> str:
    """config.json of `run_uri`, checked to be JSON.

    Raises:
        UserError: `run_uri` is not a run (no config.json).
        BadRunFile (exit 2): config.json is not JSON (a comment, a trailing comma); the message
            names the file, the line and the column.
    """
    uri = storage.join(run_uri, CONFIG)
    if not storage.exists(uri):
        raise UsageError(f"{run_uri} is not a run: it has no {CONFIG}")
    text = storage.read_bytes(uri).decode()
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise BadRunFile(f"{uri} is not valid JSON at line {error.lineno}, column {error.colno}: "
                         f"{error.msg} (JSON has no comments or trailing commas; fix the edit or "
                         "write the change with --set field=value)") from None
    return text


def read_best(run_uri: str) -> dict | None:
    """best.json of `run_uri` ({"name", "metric", "value"}), or None before any was recorded."""
    uri = storage.join(run_uri, BEST)
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None
