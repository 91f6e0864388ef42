"""`covidct best`: rank a finished sweep's trials from its storage and pull the winner.

    covidct best --sweep gs://BUCKET/sweeps/lr-depth --top 5 --out runs/best
    covidct generate --run runs/best --checkpoint best --n 16 --out out/best

Reads only files (the cluster may be long gone): each trial's run folder `<sweep>/<id>/run` holds
its config.json, metrics.jsonl and complete checkpoints, written by the job itself. A trial's
score is its best metric among the checkpoints it kept, so the score always has weights behind it.
The winner is downloaded in the run-folder layout `covidct generate --run DIR` reads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

from job import model_card, run, storage
from job.checkpoint import CheckpointStore, pull_intact
from job.config import from_json
from job.errors import UsageError, UserError
from job.metrics import heldout, registry
from job.run import Saved
from tune.layout import RUN_FOLDER, trial_run_uri
NOT_SETTINGS = ("name", "run_uri")  # differ between every two trials by construction


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial's run, as its files in storage describe it."""

    trial_id: str
    run_uri: str
    config: dict
    history: tuple[dict, ...]  # metrics.jsonl, one dict per epoch
    checkpoints: tuple[Saved, ...]  # complete ones, oldest first
    sample_epochs: tuple[int, ...]  # epochs with a sample grid

    @property
    def last_epoch(self) -> int:
        return self.history[-1]["epoch"] if self.history else 0

    def at(self, epoch: int) -> dict:
        return next((h for h in self.history if h["epoch"] == epoch), {})


@dataclasses.dataclass(frozen=True)
class Ranked:
    trial: Trial
    value: float | None  # the metric at `checkpoint`; None if no kept checkpoint measured it
    checkpoint: Saved | None


def read_trials(sweep_uri: str) -> list[Trial]:
    """Every trial run under `sweep_uri` (`<storage>/<sweep name>`)."""
    files = storage.list_files(sweep_uri)
    by_trial: dict[str, list[str]] = {}
    for rel in files:
        head, sep, inner = rel.partition(f"/{RUN_FOLDER}/")
        if sep and "/" not in head:
            by_trial.setdefault(head, []).append(inner)
    listings = {tid: run.parse_listing(rels) for tid, rels in sorted(by_trial.items())}
    ids = [tid for tid, listing in listings.items() if listing.has_config]
    if not ids:
        raise UsageError(f"{sweep_uri} holds no trial runs (<trial id>/{RUN_FOLDER}/{run.CONFIG}): "
                         "give the sweep's folder, <storage>/<sweep name>")
    trials = []
    for tid in ids:
        uri = trial_run_uri(sweep_uri, tid)
        trials.append(Trial(
            trial_id=tid, run_uri=uri, config=json.loads(run.read_config_text(uri)),
            history=tuple(run.read_metrics(uri)), checkpoints=listings[tid].checkpoints,
            sample_epochs=listings[tid].sample_epochs,
        ))
    return trials


def rank(trials: list[Trial], metric: str) -> list[Ranked]:
    """Trials best first by `metric` at their kept checkpoints; unmeasured trials last."""
    registry.direction(metric)  # a UserError naming the known metrics
    ranked = []
    for trial in trials:
        scored = [(trial.at(s.epoch)[metric], s) for s in trial.checkpoints
                  if s.step == 0 and _finite(trial.at(s.epoch).get(metric))]
        best = min(scored, key=lambda vs: registry.ordering(metric, vs[0])) if scored else None
        ranked.append(Ranked(trial, *(best or (None, None))))
    if all(r.value is None for r in ranked):
        seen = sorted({k for t in trials for h in t.history for k in h})
        raise UserError(f"no trial has a checkpoint measured by {metric!r}; the trials recorded {seen}")
    return sorted(ranked, key=lambda r: (r.value is None,
                                         0.0 if r.value is None else registry.ordering(metric, r.value)))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def varying_fields(trials: list[Trial]) -> list[str]:
    """The config fields the sweep varied: those that differ between trials."""
    fields = sorted({k for t in trials for k in t.config} - set(NOT_SETTINGS))
    return [f for f in fields if len({json.dumps(t.config.get(f)) for t in trials}) > 1]


def table(ranked: list[Ranked], metric: str, fields: list[str], limit: int | None = None) -> str:
    """A markdown table: rank, trial, metric, epoch, the hold-out SWD and intensity W1 in units of
    their real floors (which of the two drives quality_ratio), collapse signals, the varied
    settings."""
    head = ["#", "trial", metric, "epoch", "epochs", "SWD / floor", "intensity / floor",
            "diversity", "D(real) acc", *fields]
    rows = [head, ["---"] * len(head)]
    for i, r in enumerate(ranked[:limit], 1):
        at = r.trial.at(r.checkpoint.epoch) if r.checkpoint else {}
        rows.append([
            str(i), r.trial.trial_id, fmt(r.value), str(r.checkpoint.epoch) if r.checkpoint else "-",
            f"{r.trial.last_epoch}/{r.trial.config.get('epochs')}",
            fmt(_over_floor(at, "swd")), fmt(_over_floor(at, "intensity_w1")),
            fmt(at.get("diversity")), fmt(at.get("d_real_acc")),
            *(fmt(r.trial.config.get(f)) for f in fields),
        ])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _over_floor(metrics: dict, key: str) -> float | None:
    """A logged hold-out figure over its real floor (`job.metrics.heldout`), None if not logged."""
    value, floor = metrics.get(f"{key}_holdout"), metrics.get(f"{key}_floor")
    return None if value is None or floor is None else heldout.ratio(value, floor)


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value) if value == "" else str(value)


def download(ranked: Ranked, metric: str, out_dir: str) -> pathlib.Path:
    """The trial's best checkpoint and config, as a run folder `covidct generate` accepts.

    The checkpoint is marked best (checkpoints/best.json), so `--checkpoint best` and `latest`
    both load it. One that fails its manifest is set aside (a warning line) for the trial's
    next best measured one (`job.checkpoint.pull_intact`); none: CheckpointCorrupt (exit 2).
    """
    if ranked.checkpoint is None:
        raise UserError(f"trial {ranked.trial.trial_id} has no checkpoint measured by {metric}")
    out = pathlib.Path(out_dir)
    source = ranked.trial.run_uri
    config = run.read_config_text(source)
    if (out / run.CONFIG).exists() and (out / run.CONFIG).read_text() != config:
        raise UsageError(f"--out {out} already holds another run; give an empty or new folder")
    # The ranked checkpoint or, if it fails its manifest, the trial's next best measured one.
    trial = ranked.trial
    others = sorted((s for s in trial.checkpoints if s != ranked.checkpoint and s.step == 0
                     and _finite(trial.at(s.epoch).get(metric))),
                    key=lambda s: registry.ordering(metric, trial.at(s.epoch)[metric]))
    saved = pull_intact(source, [ranked.checkpoint, *others], out)
    (out / run.CONFIG).write_text(config)
    history = "".join(json.dumps(h) + "\n" for h in ranked.trial.history)
    (out / run.METRICS).write_text(history)
    value = ranked.value if saved == ranked.checkpoint else trial.at(saved.epoch)[metric]
    CheckpointStore(storage.Mirror(str(out)), keep=1).mark_best(saved.name, metric, value)
    card = model_card.for_run(str(out), saved.name, saved.epoch, from_json(config))
    (out / model_card.NAME).write_text(card)
    return out


def best(sweep_uri: str, metric: str = registry.SELECTION_METRIC, top: int = 10, out: str | None = None) -> list[Ranked]:
    """Print the ranked table (top `top`); download the winner into `out` if given."""
    if top < 1:
        raise UsageError(f"--top must be positive, got {top}")
    trials = read_trials(sweep_uri)
    ranked = rank(trials, metric)
    print(f"{len(trials)} trials in {sweep_uri}, by {metric} ({registry.direction(metric)}) at "
          "their kept checkpoints:")
    print(table(ranked, metric, varying_fields(trials), limit=top))
    if out is not None:
        folder = download(ranked[0], metric, out)
        print(f"best: trial {ranked[0].trial.trial_id}, {metric} {ranked[0].value:.4g} at epoch "
              f"{ranked[0].checkpoint.epoch} -> {folder}\n"
              f"generate: covidct generate --run {folder} --checkpoint best --n 16 --out DIR")
    return ranked
