"""One Tune trial = one run of the job's `fit`, its run folder under the sweep's storage.

The trial turns its Tune config into a `TrainConfig` through `job.config.override` (the CLI's
path), writes its run to `<sweep>/<trial id>/run` (sample grids, metrics.jsonl and TensorBoard
events land in the bucket beside Ray's own trial files) and forwards each measured epoch to
`ray.tune.report`. The job's own checkpoints in that run folder are what a trial resumes from:
Tune restarts a failed trial, or one that was running when the driver died, and `fit` loads the
newest complete checkpoint it finds there. Only PBT hands Ray the checkpoint folders as well,
because PBT starts one trial from another's checkpoint (`ray.tune.get_checkpoint`). Ray's own
copies were a race under ASHA: Ray prunes its copies by score while its record of which one is
the latest reaches storage only every few seconds, so a driver killed in between came back to a
checkpoint that no longer existed ("does not exist on storage anymore") and the trial failed
every retry.

A trial whose loss turns non-finite (`job.errors.Diverged`) is an outcome of the search, not a
fault: retrying it from its last checkpoint with the same settings diverges again. Neither can a
trial whose settings cannot train (any other exit-2 error: a batch its replicas cannot split, a
run folder holding other settings). Such a trial reports the worst possible score with the
reason under `diverged` or `invalid` and ends as a finished trial, so Tune neither retries it nor
reruns it on resume, the scheduler ranks it last, and the report lists it with its reason.
"""

from __future__ import annotations

import logging

from ray import tune

from job.config import TrainConfig, override, validate
from job.errors import Diverged, UserError
from job.metrics import registry
from job.metrics.registry import SELECTION_METRIC
from job.training.loop import fit
from tune.layout import trial_run_uri
from tune.reporting import Reporter
from tune.workers import train_group

DIVERGED = "diverged"  # the result key holding a diverged trial's reason
INVALID = "invalid"  # the result key holding the reason of a trial whose settings cannot train


def trial_dirname(trial) -> str:
    """Ray's folder for a trial is its id, so `<sweep>/<id>/` holds Ray's files and our `run/`."""
    return trial.trial_id


def trial_config(base: dict, params: dict, sweep_uri: str, trial_id: str) -> TrainConfig:
    """The job config of one trial: the sweep's base config, then the trial's sampled values."""
    config = override(override(TrainConfig(), base), params)
    return validate(override(config, {"name": trial_id, "run_uri": trial_run_uri(sweep_uri, trial_id)}))


def ended_result(error: UserError) -> dict:
    """The last result of a trial that a retry cannot save (exit 2): the worst score, the epoch
    (0 when it never trained, as the schedulers need one) and why, under DIVERGED or INVALID."""
    worst = registry.worst(SELECTION_METRIC)
    if isinstance(error, Diverged):
        return {SELECTION_METRIC: worst, "epoch": error.epoch,
                DIVERGED: f"non-finite loss in epoch {error.epoch} (last good checkpoint: epoch "
                          f"{error.last_good_epoch})"}
    return {SELECTION_METRIC: worst, "epoch": 0, INVALID: " ".join(str(error).split())[:500]}


def run_trial(params: dict, base: dict, sweep_uri: str, with_checkpoints: bool = False) -> None:
    """The Tune function trainable (bound to `base`, `sweep_uri` and `with_checkpoints` - hand Ray
    the checkpoints, for PBT - by `tune.with_parameters`).

    A trial of `num_workers` > 1 is the driver of a Ray Train run (`tune.workers.train_group`):
    its workers train and report, this process waits for them and holds no device.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the job's progress lines
    log = logging.getLogger("covidct")
    checkpoint = tune.get_checkpoint() if with_checkpoints else None
    reporter = Reporter(tune.report, with_checkpoints)
    try:
        config = trial_config(base, params, sweep_uri, tune.get_context().get_trial_id())
        if config.num_workers > 1:  # Ray Train retries nothing: Tune retries the trial (below)
            train_group(config, report=True)
        elif checkpoint is None:  # a new trial, or one restarted: fit resumes from its run folder
            fit(config, callbacks=[reporter])
        else:  # PBT: its own checkpoint, or (an exploit) another trial's, whose settings it now has
            log.info(f"trial starts from the checkpoint {checkpoint.path}")
            with checkpoint.as_directory() as folder:
                fit(config, callbacks=[reporter], resume_from=folder)
        if config.num_workers == 1 and reporter.completed_run(config.resolved_run_uri):
            log.info("trial's run was already complete: its last measurement reported again")
    except UserError as error:
        if error.exit_code != 2:
            raise  # may succeed on retry (storage) or preempted: Tune restarts it
        log.warning(f"trial ended, a retry would fail again: {error}")
        tune.report(ended_result(error))
