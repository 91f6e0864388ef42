"""One Tune trial = one run of the job's `fit`, its run folder under the sweep's storage.

The trial turns its Tune config into a `TrainConfig` through `job.config.override` (the CLI's
path), writes its run to `<sweep>/<trial id>/run` (sample grids, metrics.jsonl and TensorBoard
events land in the bucket beside Ray's own trial files) and forwards each measured epoch to
`ray.tune.report`, with the job's checkpoint folder whenever one was written. A retried or
PBT-exploited trial starts from the checkpoint Tune hands it (`ray.tune.get_checkpoint`).

A trial whose loss turns non-finite (`job.errors.Diverged`) is an outcome of the search, not a
fault: retrying it from its last checkpoint with the same settings diverges again. The trial
reports the worst possible score with the reason under `diverged` and ends as a finished trial,
so Tune neither retries it nor reruns it on resume, and the scheduler ranks it last.
"""

from __future__ import annotations

import logging

from ray import tune

from job.config import TrainConfig, override, validate
from job.errors import Diverged
from job.metrics import registry
from job.metrics.registry import SELECTION_METRIC
from job.training.loop import EpochReport, fit
from tune.layout import trial_run_uri

DIVERGED = "diverged"  # the result key holding a diverged trial's reason


def trial_dirname(trial) -> str:
    """Ray's folder for a trial is its id, so `<sweep>/<id>/` holds Ray's files and our `run/`."""
    return trial.trial_id


def trial_config(base: dict, params: dict, sweep_uri: str, trial_id: str) -> TrainConfig:
    """The job config of one trial: the sweep's base config, then the trial's sampled values."""
    config = override(override(TrainConfig(), base), params)
    return validate(override(config, {"name": trial_id, "run_uri": trial_run_uri(sweep_uri, trial_id)}))


def report_epoch(report: EpochReport) -> None:
    """Forward an epoch that measured the selection metric to Tune, with its checkpoint if any.

    Epochs without a measurement are not reported: Tune requires the scheduler's metric in every
    result, and the sweep plan makes every checkpoint epoch a measured one.
    """
    if SELECTION_METRIC not in report.metrics:
        return
    metrics = {**report.metrics, "epoch": report.epoch}
    checkpoint = None
    if report.checkpoint_dir is not None:  # complete at the run URI (the loop waits for it)
        checkpoint = tune.Checkpoint.from_directory(report.checkpoint_dir)
    tune.report(metrics, checkpoint=checkpoint)


def diverged_result(error: Diverged) -> dict:
    """The last result of a diverged trial: the worst score, the epoch, and why."""
    return {SELECTION_METRIC: registry.worst(SELECTION_METRIC), "epoch": error.epoch,
            DIVERGED: f"non-finite loss in epoch {error.epoch} (last good checkpoint: epoch "
                      f"{error.last_good_epoch})"}


def run_trial(params: dict, base: dict, sweep_uri: str) -> None:
    """The Tune function trainable (bound to `base` and `sweep_uri` by `tune.with_parameters`)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the job's progress lines
    config = trial_config(base, params, sweep_uri, tune.get_context().get_trial_id())
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            fit(config, callbacks=[report_epoch])
            return
        with checkpoint.as_directory() as folder:
            fit(config, callbacks=[report_epoch], resume_from=folder)
    except Diverged as error:
        logging.getLogger("covidct").warning(f"trial diverged, ending it: {error}")
        tune.report(diverged_result(error))
