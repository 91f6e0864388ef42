"""The sweep report: a markdown table of trials and the top generators' sample grids.

Written into the sweep's own storage (`<sweep>/report.md`, `<sweep>/report/<trial id>.png`) at the
end of every sweep, so it sits beside the results it describes, in the bucket or the folder. Each
grid is the one the trial drew (fixed noise) at its best checkpoint's epoch, or the latest before
it; a per-setting summary says which values of each varied field win. Trials that diverged, were
invalid (settings that cannot train) or failed after their retries are listed with their reason:
the sweep succeeded if it ran them all. `trial_outcomes` reads how each ended from Tune's results.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import PurePosixPath

from job import run, storage
from job.errors import UserError
from job.metrics import registry
from tune import best as results
from tune.layout import REPORT, REPORT_IMAGES

MAX_LEVELS = 8  # a field with more distinct values is summarised in two halves around its median
FINISHED, DIVERGED, INVALID, FAILED = "finished", "diverged", "invalid", "failed"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a trial ended: finished, diverged or invalid (it ended itself), or failed (after its
    retries)."""

    status: str
    reason: str = ""
    epoch: int | None = None  # the last epoch it reported


@dataclasses.dataclass(frozen=True)
class Written:
    uri: str
    measured: int  # trials with a kept checkpoint measured by the metric


def outcome_line(outcomes: dict[str, Outcome]) -> str:
    """'3 trials: 1 finished, 1 diverged (t2), 1 failed (t3)'."""
    parts = []
    for status in (FINISHED, DIVERGED, INVALID, FAILED):
        ids = sorted(t for t, o in outcomes.items() if o.status == status)
        if ids:
            parts.append(f"{len(ids)} {status}" + (f" ({', '.join(ids)})" if status != FINISHED else ""))
    return f"{len(outcomes)} trials: " + (", ".join(parts) or "none ran")


def trial_outcomes(results) -> dict[str, Outcome]:
    """How each trial of a Tune ResultGrid ended: finished, diverged or invalid (with the reason
    its last result holds), or failed (the last line of its error)."""
    from tune.trainable import DIVERGED as DIVERGED_KEY, INVALID as INVALID_KEY

    outcomes = {}
    for result in results:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or PurePosixPath(str(result.path)).name
        if result.error is not None:
            lines = [line for line in str(result.error).splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else type(result.error).__name__
            outcomes[trial_id] = Outcome(FAILED, reason[:500], metrics.get("epoch"))
        elif DIVERGED_KEY in metrics:
            outcomes[trial_id] = Outcome(DIVERGED, metrics[DIVERGED_KEY], metrics.get("epoch"))
        elif INVALID_KEY in metrics:
            outcomes[trial_id] = Outcome(INVALID, metrics[INVALID_KEY], metrics.get("epoch"))
        else:
            outcomes[trial_id] = Outcome(FINISHED, "", metrics.get("epoch"))
    return outcomes


def write_report(sweep_uri: str, metric: str = registry.SELECTION_METRIC, top: int = 3,
                 outcomes: dict[str, Outcome] | None = None) -> Written:
    """Write report.md and the top `top` grids into `sweep_uri`; returns its URI and how many
    trials it could rank. A sweep in which no trial produced a result still gets a report that
    says why (the outcomes)."""
    outcomes = outcomes or {}
    try:
        trials = results.read_trials(sweep_uri)
        ranked = results.rank(trials, metric)  # unmeasured trials last
    except UserError:  # no trial wrote a run, or none has a measured checkpoint
        trials, ranked = [], []
    fields = results.varying_fields(trials) if trials else []
    images = {}
    for r in ranked[:top]:
        epochs = [e for e in r.trial.sample_epochs if r.checkpoint and e <= r.checkpoint.epoch]
        if epochs:
            source = storage.join(r.trial.run_uri, run.sample_grid(epochs[-1]))
            rel = f"{REPORT_IMAGES}/{r.trial.trial_id}.png"
            storage.write_bytes(storage.join(sweep_uri, rel), storage.read_bytes(source))
            images[r.trial.trial_id] = (rel, epochs[-1])
    uri = storage.join(sweep_uri, REPORT)
    text = render(sweep_uri, ranked, metric, fields, images, top, outcomes)
    storage.write_bytes(uri, text.encode())
    return Written(uri, sum(r.value is not None for r in ranked))


def render(sweep_uri: str, ranked: list, metric: str, fields: list[str], images: dict, top: int,
           outcomes: dict[str, Outcome] | None = None) -> str:
    """The report's markdown (pure: everything it shows is passed in)."""
    mode = registry.direction(metric)
    outcomes = outcomes or {}
    lines = [f"# Sweep report: {sweep_uri}", ""]
    if outcomes:
        lines += [outcome_line(outcomes) + ".", ""]
    if not ranked:
        lines += [f"No trial kept a checkpoint measured by {metric}.", ""]
        return "\n".join(lines + ended(outcomes))
    lines += [
        f"{len(ranked)} trials ranked by {metric} ({mode} is better) at the checkpoints they kept.",
        "",
        results.table(ranked, metric, fields),
        "",
    ]
    lines += ended(outcomes)
    if fields:
        lines += [f"## Which settings win ({metric} of the trials with each value)", ""]
        for field in fields:
            lines += [summary(ranked, field, metric), ""]
    lines += [f"## Top {min(top, len(ranked))}", ""]
    for i, r in enumerate(ranked[:top], 1):
        settings = ", ".join(f"{f}={results.fmt(r.trial.config.get(f))}" for f in fields) or "base config"
        outcome = outcomes.get(r.trial.trial_id)
        later = f" (then {outcome.status}: {outcome.reason})" if outcome and outcome.status != FINISHED else ""
        lines.append(f"### {i}. trial {r.trial.trial_id}: {metric} {results.fmt(r.value)}{later}")
        lines.append("")
        lines.append(settings)
        lines.append("")
        if r.trial.trial_id in images:
            rel, epoch = images[r.trial.trial_id]
            lines.append(f"![{r.trial.trial_id} at epoch {epoch}]({rel})")
            lines.append(f"(synthetic samples, fixed noise, epoch {epoch})")
        else:
            lines.append("(no sample grid at or before its best checkpoint)")
        lines.append("")
    return "\n".join(lines)


def ended(outcomes: dict[str, Outcome]) -> list[str]:
    """The section on trials that diverged or failed: which, at which epoch, why."""
    bad = {t: o for t, o in sorted(outcomes.items()) if o.status != FINISHED}
    if not bad:
        return []
    lines = ["## Diverged, invalid and failed trials", "",
             "Diverged and invalid trials ended themselves with the worst score (a retry would "
             "diverge again, or its settings cannot train); failed trials failed again after their "
             "retries (their error is in Ray's trial folder).",
             "", "| trial | outcome | last epoch | reason |", "| --- | --- | --- | --- |"]
    for trial_id, o in bad.items():
        reason = o.reason.replace("|", "\\|")
        lines.append(f"| {trial_id} | {o.status} | {o.epoch if o.epoch is not None else '-'} | {reason} |")
    return lines + [""]


def summary(ranked: list, field: str, metric: str) -> str:
    """Per value of `field`: how many trials, their best and median metric."""
    measured = [r for r in ranked if r.value is not None]
    values = [r.trial.config.get(field) for r in measured]
    groups: dict[str, list[float]] = {}
    if len({repr(v) for v in values}) > MAX_LEVELS and all(isinstance(v, (int, float)) for v in values):
        middle = statistics.median(values)
        for v, r in zip(values, measured):
            groups.setdefault(f"<= {middle:.3g}" if v <= middle else f"> {middle:.3g}", []).append(r.value)
    else:
        for v, r in zip(values, measured):
            groups.setdefault(results.fmt(v), []).append(r.value)
    def best_of(scores: list[float]) -> float:
        return min(scores, key=lambda v: registry.ordering(metric, v))

    rows = [f"| {field} | trials | best | median |", "| --- | --- | --- | --- |"]
    for label, scores in sorted(groups.items(), key=lambda kv: registry.ordering(metric, best_of(kv[1]))):
        rows.append(f"| {label} | {len(scores)} | {best_of(scores):.4g} | {statistics.median(scores):.4g} |")
    return "\n".join(rows)
