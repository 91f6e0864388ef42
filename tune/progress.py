"""Progress of a sweep beyond Ray's trial table: one line per finished trial with its metric.

The line carries what decides a GAN trial: its best SWD and when, and the collapse signals at
that epoch (diversity of a fixed-seed batch, the discriminator's accuracy on real images).
"""

from __future__ import annotations

from ray import tune

from job.metrics import registry
from tune.trainable import DIVERGED, INVALID


class FinishedTrialLines(tune.Callback):
    """Prints a line when a trial finishes (or fails); remembers each trial's best result."""

    def __init__(self, metric: str, searched: list[str]):
        self.metric = metric
        self.searched = searched
        self.best: dict[str, dict] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if DIVERGED in result or INVALID in result:
            return  # its worst-possible score is not a measurement
        value = result.get(self.metric)
        kept = self.best.get(trial.trial_id)
        if value is not None and registry.is_better(self.metric, value, kept and kept[self.metric]):
            self.best[trial.trial_id] = dict(result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if DIVERGED in last:
            print(f"trial {trial.trial_id} diverged, ended with the worst {self.metric} and not "
                  f"retried: {last[DIVERGED]}", flush=True)
            return
        if INVALID in last:
            print(f"trial {trial.trial_id} is invalid, ended with the worst {self.metric} and not "
                  f"retried: {last[INVALID]}", flush=True)
            return
        print(finished_line(trial.trial_id, self.metric, self.best.get(trial.trial_id),
                            trial.last_result or {}, {k: trial.config.get(k) for k in self.searched}),
              flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"trial {trial.trial_id} failed after its retries; its error is in {trial.path}", flush=True)


def finished_line(trial_id: str, metric: str, best: dict | None, last: dict, params: dict) -> str:
    shown = " ".join(f"{k}={_short(v)}" for k, v in params.items())
    if best is None:
        return f"trial {trial_id} finished without a measurement | {shown}"
    nan = float("nan")
    return (
        f"trial {trial_id} finished: {metric} {best[metric]:.4f} at epoch {best.get('epoch')} "
        f"(stopped at {last.get('epoch', best.get('epoch'))}) | diversity {best.get('diversity', nan):.3f} | "
        f"D(real) acc {best.get('d_real_acc', nan):.2f} | {shown}"
    )


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return repr(value) if value == "" else str(value)
