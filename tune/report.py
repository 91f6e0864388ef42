"""The sweep report: a markdown table of trials and the top generators' sample grids.

Written into the sweep's own storage (`<sweep>/report.md`, `<sweep>/report/<trial id>.png`) at the
end of every sweep, so it sits beside the results it describes, in the bucket or the folder. Each
grid is the one the trial drew (fixed noise) at its best checkpoint's epoch, or the latest before
it; a per-setting summary says which values of each varied field win.
"""

from __future__ import annotations

import statistics

from job import run, storage
from job.metrics import registry
from tune import best as results
from tune.layout import REPORT, REPORT_IMAGES

MAX_LEVELS = 8  # a field with more distinct values is summarised in two halves around its median


def write_report(sweep_uri: str, metric: str = "swd", top: int = 3) -> str:
    """Write report.md and the top `top` grids into `sweep_uri`; returns the report's URI."""
    trials = results.read_trials(sweep_uri)
    ranked = results.rank(trials, metric)
    fields = results.varying_fields(trials)
    images = {}
    for r in ranked[:top]:
        epochs = [e for e in r.trial.sample_epochs if r.checkpoint and e <= r.checkpoint.epoch]
        if epochs:
            source = storage.join(r.trial.run_uri, run.sample_grid(epochs[-1]))
            rel = f"{REPORT_IMAGES}/{r.trial.trial_id}.png"
            storage.write_bytes(storage.join(sweep_uri, rel), storage.read_bytes(source))
            images[r.trial.trial_id] = (rel, epochs[-1])
    uri = storage.join(sweep_uri, REPORT)
    storage.write_bytes(uri, render(sweep_uri, ranked, metric, fields, images, top).encode())
    return uri


def render(sweep_uri: str, ranked: list, metric: str, fields: list[str], images: dict, top: int) -> str:
    """The report's markdown (pure: everything it shows is passed in)."""
    mode = registry.direction(metric)
    lines = [
        f"# Sweep report: {sweep_uri}",
        "",
        f"{len(ranked)} trials ranked by {metric} ({mode} is better) at the checkpoints they kept.",
        "",
        results.table(ranked, metric, fields),
        "",
    ]
    if fields:
        lines += [f"## Which settings win ({metric} of the trials with each value)", ""]
        for field in fields:
            lines += [summary(ranked, field, metric), ""]
    lines += [f"## Top {min(top, len(ranked))}", ""]
    for i, r in enumerate(ranked[:top], 1):
        settings = ", ".join(f"{f}={results.fmt(r.trial.config.get(f))}" for f in fields) or "base config"
        lines.append(f"### {i}. trial {r.trial.trial_id}: {metric} {results.fmt(r.value)}")
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
