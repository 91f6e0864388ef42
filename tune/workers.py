"""`covidct train --num-workers N`: one run as N Ray Train workers (one per node, each with its
GPUs), the job's own `fit` in each under MultiWorkerMirroredStrategy.

    ray job submit --address http://HEAD:8265 -- covidct train --preset seed336x504 \\
        --num-workers 4 --set gpus_per_worker=1 --run gs://BUCKET/runs/long

Ray Train's TensorflowTrainer starts the workers and writes each one's TF_CONFIG; `job.training.
group` does the rest (one writer, the chief's state, agreed stops). A worker lost mid-run ends the
group's step (its collectives fail or time out, exit 1); a new group is started, up to
MAX_FAILURES times, and every restart resumes from the run's newest complete checkpoint, since
the run's own checkpoints (not Ray's) are what `fit` resumes from. Exit codes keep the contract:
the workers' own `UserError` code when they agree on one (2 and 143 end the run at once), else 1.
"""

from __future__ import annotations

import logging
import os
import tempfile

from job import storage
from job.config import TrainConfig, override
from job.errors import UserError

# Group restarts after a lost worker before the run gives up with exit 1 (a spot node reclaimed
# mid-run is one; a run that keeps losing workers has a cluster problem to look at).
MAX_FAILURES = 5

log = logging.getLogger("covidct")
# How long a group waits for its workers' resources (Ray Train's default: 60 s, then a logged
# traceback and another wait, forever). GPU nodes that an autoscaler adds from zero take minutes.
WORKER_START_SECONDS = 900


def train_group(config: TrainConfig, takeover: bool = False, report: bool = False) -> int:
    """Train `config` as `config.num_workers` Ray Train workers on the Ray cluster that
    RAY_ADDRESS names (a local one without it); returns 0, or raises the workers' `UserError`.

    Each worker asks for `config.gpus_per_worker` GPUs (CPU: one replica per worker) and
    `config.cpus_per_worker` CPUs. With `report`, this process is a Ray Tune trial (the driver
    of Ray 2.60's Tune + Train V2 pattern): the workers report each measured epoch, Ray Train's
    `TuneReportCallback` hands the chief's report to Tune, and Ray Train restarts nothing - a
    failed group fails the trial, which Tune retries (and which ends for good on exit 2).

    Raises:
        ConfigError (exit 2): the dataset is not prepared (checked before any worker starts).
        StorageError (exit 1): the run URI cannot be reached.
        UserError: the workers' own when they agree on it (a changed run identity or a
            divergence: 2, at once; SIGTERM: 143), or exit 1 after MAX_FAILURES restarts.
    """
    import ray

    from job.training import data

    # Ray workers run in their own folders: a local path means the same place there only when
    # absolute.
    config = override(config, {"data_dir": storage.absolute(config.data_dir),
                               "run_uri": storage.absolute(config.resolved_run_uri)})
    # What would fail on every worker fails here, once, before any worker starts.
    storage.check_reachable(config.run_uri)
    data.describe(config)
    # Ray Train hands its RAY_TRAIN_* variables from this process to its controller and workers.
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", str(WORKER_START_SECONDS))
    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=True)
    try:
        return _run_group(config, takeover, report)
    finally:
        if started:  # Ray's last worker logs come out now, before the caller's one error line
            ray.shutdown()


def _run_group(config: TrainConfig, takeover: bool, report: bool) -> int:
    """`train_group` on the Ray this process joined: new groups until one ends (see there)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    gpus = config.gpus_per_worker
    # Inside a Tune trial Tune retries the trial; here the group is restarted on exit 1 only
    # (a lost worker, a collective timed out): Ray Train's own FailureConfig would also restart
    # a group whose workers all said "will fail again" (2) or "preempted" (143).
    restarts = 0 if report else MAX_FAILURES
    attempt = 0
    while True:
        attempt += 1
        trainer = TensorflowTrainer(
            worker_loop,
            train_loop_config={"config": config.to_dict(), "takeover": takeover, "report": report},
            scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=gpus > 0,
                                         resources_per_worker={"CPU": config.cpus_per_worker,
                                                               **({"GPU": gpus} if gpus else {})}),
            # Ray Train keeps only its own bookkeeping here: the run's checkpoints are the job's.
            run_config=RunConfig(name=config.name,
                                 storage_path=tempfile.mkdtemp(prefix="covidct-ray-train-"),
                                 failure_config=FailureConfig(max_failures=0),
                                 callbacks=[TuneReportCallback()] if report else None),
        )
        try:
            trainer.fit()
            return 0
        except Exception as error:  # Ray's TrainingFailedError: the workers' exceptions inside
            failure = group_error(error, attempt)
        if failure.exit_code != 1 or attempt > restarts:
            raise failure from None
        log.warning(f"the worker group failed (attempt {attempt} of {restarts + 1}); a new group "
                    f"resumes from the run's newest complete checkpoint: {failure}")


def worker_loop(params: dict) -> None:
    """One Ray Train worker: the job's `fit` on the config it was handed (TF_CONFIG is set);
    in a Tune trial, every worker reports the same measured epochs (`tune.reporting`)."""
    # Ray Train asks TensorFlow for the legacy tf.keras (Keras 2); the job's models are Keras 3.
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    from job.training.loop import fit
    from job.training.strategy import role

    # The chief's progress lines only: the others train the same epochs into scratch folders.
    logging.basicConfig(level=logging.INFO if role().is_chief else logging.WARNING, format="%(message)s")

    config = override(TrainConfig(), params["config"])
    if not params["report"]:
        fit(config, takeover=params["takeover"])
        return
    import ray.train

    from tune.reporting import Reporter

    reporter = Reporter(ray.train.report)
    fit(config, callbacks=[reporter], takeover=params["takeover"])
    reporter.completed_run(config.resolved_run_uri)


def group_error(error: Exception, attempts: int) -> UserError:
    """The `UserError` to exit with for a failed Ray Train run: the workers' own when they all
    raised one with the same exit code, else exit 1 naming the first failure."""
    failures = list(getattr(error, "worker_failures", {}).values())
    causes = [getattr(f, "cause", f) for f in failures]  # Ray wraps each worker's exception
    own = [c for c in causes if isinstance(c, UserError)]
    if own and len(own) == len(causes) and len({c.exit_code for c in own}) == 1:
        return own[0]
    first = " ".join(str(causes[0] if causes else error).split())[:500]
    return UserError(f"the worker group failed {attempts} time(s): {first}")
