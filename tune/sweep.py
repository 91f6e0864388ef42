"""`covidct sweep`: many training runs as Ray Tune trials, everything in the sweep's storage.

    covidct sweep --preset demo --name lr-depth --num-samples 8 --gpus-per-trial 1 \\
        --storage gs://BUCKET/sweeps --data-dir gs://BUCKET/tfds

    # on a cluster that scales from zero (KubeRay, k8s/ray/): say what one trial needs and how
    # many the worker groups can hold at once; the autoscaler adds the workers
    python -m tune --preset seed336x504 --gpus-per-trial 1 --cpus-per-trial 6 \\
        --max-concurrent-trials 4 --name search --storage gs://BUCKET/sweeps ...

Before a trial starts, the sweep checks the space (every value it can draw), the storage and the
cluster, prints the plan (`tune.plan`, `tune.resources`) and refuses what can never run. Trials
are ranked by SWD (lower is better): ASHA stops the weak ones after a grace period, or PBT
(`tune.pbt`) copies and perturbs the strong ones. A sweep is named, not stamped: running the same
command again resumes it from its storage (`Tuner.restore`), whose record of finished trials is
at most STATE_SYNC_SECONDS old. The sweep succeeds (exit 0) once it ran every trial and wrote its
report (`tune.report`); diverged and invalid trials end themselves, failed ones are retried
MAX_FAILURES times, and the report lists them all. This module is the Ray wiring.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from job import storage
from job.config import TrainConfig, override, validate
from job.errors import UserError
from job.metrics.registry import SELECTION_METRIC
from job.storage.permissions import bucket_permissions, make_folders
from tune import layout, pbt, plan as plans, resources as res
from tune import space as spaces

if TYPE_CHECKING:
    from tune import report

# A failed trial is retried from its last checkpoint this often. Failures here are infrastructure
# (a reclaimed spot node, a lost worker, a storage outage): Tune does not count a failure only when
# Ray records the node's death as a preemption, which races GKE's ~15 s pod grace, so a long sweep
# on spot nodes sees several per trial. Divergence is not a failure: the trial ends (trainable.py).
MAX_FAILURES = 10
# The driver writes Tune's experiment state (which trials finished, the searcher) to storage this
# often, so a crashed or evicted driver reruns at most this much finished work when resubmitted.
STATE_SYNC_SECONDS = 15
# What the Tune process of a worker-group trial asks for (bytes): it only waits for its Ray Train
# workers, so it holds no CPU a worker could use (Ray Train's own guide: the driver needs no
# device; a 0-CPU request is no request to Tune, memory is a resource every node has, the
# KubeRay head's 0 CPUs included). About what the process holds with TensorFlow imported.
DRIVER_MEMORY = 512 * 2**20


def run_sweep(
    base: TrainConfig,
    *,
    name: str,
    storage_uri: str,
    num_samples: int = 4,
    gpus_per_trial: int | None = None,
    cpus_per_trial: int | None = None,
    max_concurrent_trials: int | None = None,
    space_file: str | None = None,
    scheduler: str = "asha",
    grace_period_epochs: int | None = None,
    top: int = 3,
) -> dict[str, "report.Outcome"]:
    """Check, plan and run (or resume) the sweep; write its report. Returns each trial's outcome.

    The sweep has done its job when it ran every trial and wrote its report, even if some trials
    diverged, were invalid or failed after their retries (the report lists them). It raises a
    UserError when it could not run (bad input, storage, cluster: exit 1 or 2), when it stopped
    with trials unfinished (exit 1: resubmit to resume), or when no trial produced a result (exit
    1 if some failed, which a retry may fix; 2 if none could, which a retry repeats).

    Connects to the Ray cluster of `RAY_ADDRESS` (what `ray job submit` sets), to the one this
    process already joined, or starts a local one.

    With `base.num_workers` > 1 every trial is a Ray Train run of that many workers, each asking
    for `base.gpus_per_worker` GPUs and `base.cpus_per_worker` CPUs (`tune.workers`); its Tune
    process only waits for them (DRIVER_MEMORY, no CPU). PBT is refused for such trials: it hands
    one trial's checkpoint to another process, and a worker group resumes only from its run folder.
    """
    from tune import report

    plans.check_arguments(name, num_samples, scheduler)
    space = spaces.load_space(space_file) if space_file else None
    if space:  # the workers, one value for every trial: the base's, as if given with --set
        space, fixed = spaces.split_fixed(space)
        base, space = override(base, fixed), space or None
    workers = base.num_workers
    if workers > 1:
        plans.check_group(workers, scheduler, gpus_per_trial, cpus_per_trial)
        gpus_per_trial, cpus_per_trial = base.gpus_per_worker, base.cpus_per_worker
    if space and scheduler == "pbt":
        pbt.check_space(space)  # before the cluster and the data: the space alone decides
    storage_uri = storage.absolute(storage_uri)
    base = override(base, {"data_dir": storage.absolute(base.data_dir)})
    storage.check_reachable(storage_uri)

    import ray
    from ray import tune

    from tune import trainable

    if not ray.is_initialized():
        ray.init()
    sweep_uri = layout.sweep_uri(storage_uri, name)
    trials_estimate = num_samples * (spaces.grid_points(space) if space else 1)
    cluster = res.cluster_now(trials_estimate, max_concurrent_trials)
    resources = res.plan_resources(cluster, gpus_per_trial, cpus_per_trial or 1, base.cpu_replicas,
                                   trials_estimate, workers)
    base = validate(override(base, {"cpu_replicas": resources.cpu_replicas}), resources.replicas)
    counts = {plans.dataset_key(base): plans.train_images(base)}
    if space is None:
        space = spaces.default_space(base, resources.replicas, counts[plans.dataset_key(base)])
        space = pbt.population_space(space) if scheduler == "pbt" else space
    configs = spaces.check(space, base, resources.replicas)
    plans.check_intervals(configs)
    grace = plans.grace_period(configs, grace_period_epochs)
    plan = plans.make_sweep_plan(name, sweep_uri, num_samples, space, configs, resources, scheduler,
                                 grace, counts, cluster.grows)
    schedule = _scheduler(scheduler, space, configs, grace)

    filesystem, path = storage.pyarrow_filesystem(storage_uri)
    experiment = f"{path}/{name}"
    with bucket_permissions(sweep_uri):
        make_folders(filesystem, experiment)
        resuming = tune.Tuner.can_restore(experiment, storage_filesystem=filesystem)
    print(dataclasses.replace(plan, resuming=resuming).describe(), flush=True)

    fn = tune.with_resources(
        tune.with_parameters(trainable.run_trial, base=base.to_dict(), sweep_uri=sweep_uri,
                             with_checkpoints=scheduler == "pbt"),
        {"memory": DRIVER_MEMORY} if workers > 1 else
        {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
    )
    # Tune reads its snapshot period from the environment only (TuneController).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(STATE_SYNC_SECONDS))
    with bucket_permissions(sweep_uri):
        if resuming:
            tuner = tune.Tuner.restore(experiment, fn, resume_unfinished=True, resume_errored=True,
                                       storage_filesystem=filesystem)
        else:
            tuner = _new_tuner(fn, space, schedule, plan, num_samples, path, filesystem)
        results = tuner.fit()
    unfinished = unfinished_trials(results)
    if unfinished:
        raise UserError(f"sweep '{name}' stopped with {len(unfinished)} trial(s) unfinished; run the "
                        "same command again to resume it")
    outcomes = report.trial_outcomes(results)
    written = report.write_report(sweep_uri, SELECTION_METRIC, top, outcomes)
    print(report.outcome_line(outcomes), flush=True)
    print(f"report: {written.uri}", flush=True)
    if not written.measured:
        error = UserError(f"sweep '{name}': no trial produced a result ({report.outcome_line(outcomes)}); "
                          f"see {written.uri}")
        error.exit_code = 1 if any(o.status == report.FAILED for o in outcomes.values()) else 2
        raise error
    print(f"best checkpoint: covidct best --sweep {sweep_uri} --out DIR", flush=True)
    return outcomes


def unfinished_trials(results) -> list[str]:
    """Trials a stopped `Tuner.fit` (Ctrl-C, a lost driver) left pending, running or paused.

    By Tune's trial status: a trial ASHA stopped, or one restored as finished, can lack the
    `done` flag in its last result. ResultGrid does not carry the status, its analysis does.
    """
    from ray.tune.experiment import Trial

    analysis = getattr(results, "_experiment_analysis", None)
    trials = getattr(analysis, "trials", None)
    if trials is None:  # a Ray without it: fall back on the flag
        return [str(r.path) for r in results if r.error is None and not (r.metrics or {}).get("done")]
    return [t.trial_id for t in trials if t.status not in (Trial.TERMINATED, Trial.ERROR)]


def _new_tuner(fn, space: spaces.Space, schedule, plan: plans.SweepPlan, num_samples: int,
               path: str, filesystem):
    from ray import tune

    from tune import trainable
    from tune.progress import FinishedTrialLines

    return tune.Tuner(
        fn,
        param_space=spaces.to_param_space(space),
        tune_config=tune.TuneConfig(
            metric=SELECTION_METRIC, mode=plans.MODE, num_samples=num_samples, scheduler=schedule,
            max_concurrent_trials=plan.resources.concurrent,
            # A fresh process per trial: it hands its GPU memory back, and Ray 2.60 cannot reuse
            # a function trainable's actor ("requires reset_config()"); on a head with no CPU to
            # spare, that failed reuse left the next trial waiting for the old actor's CPUs.
            reuse_actors=False,
            trial_dirname_creator=trainable.trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=plan.name, storage_path=path, storage_filesystem=filesystem,
            # Only PBT hands Ray checkpoints (trainable.py: under ASHA a trial resumes from its
            # own run folder). PBT clones other trials' checkpoints at any time: pruning them
            # races the clone ("does not exist on storage anymore"), so Ray keeps them all.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            # The experiment state (trial statuses) goes to storage every STATE_SYNC_SECONDS
            # (TUNE_GLOBAL_CHECKPOINT_S above); Ray's default for other syncing is 5 minutes.
            sync_config=tune.SyncConfig(sync_period=STATE_SYNC_SECONDS),
            callbacks=[FinishedTrialLines(SELECTION_METRIC, sorted(space))],
        ),
    )


def _scheduler(kind: str, space: spaces.Space, configs: list[TrainConfig], grace: int):
    from ray.tune.schedulers import ASHAScheduler

    if kind == "pbt":
        return pbt.scheduler(space, grace)
    return ASHAScheduler(time_attr="epoch", max_t=max(c.epochs for c in configs), grace_period=grace)
