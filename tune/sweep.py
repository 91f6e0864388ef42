"""`covidct sweep`: many training runs as Ray Tune trials, everything in the sweep's storage.

    covidct sweep --preset demo --name lr-depth --num-samples 8 --gpus-per-trial 1 \\
        --storage gs://BUCKET/sweeps --data-dir gs://BUCKET/tfds

    # on a cluster that scales from zero (KubeRay, k8s/ray/): say what one trial needs and how
    # many the worker groups can hold at once; the autoscaler adds the workers
    python -m tune --preset seed336x504 --gpus-per-trial 1 --cpus-per-trial 6 \
        --max-concurrent-trials 4 --name search --storage gs://BUCKET/sweeps ...

Before a trial starts, the sweep checks the space, the storage and the cluster, prints the plan
and refuses what can never run. Trials are ranked by SWD (lower is better): ASHA stops the weak
ones after a grace period, or PBT copies and perturbs the strong ones. A sweep is named, not
stamped: running the same command again resumes it from its storage (`Tuner.restore`), whose
record of finished trials is at most STATE_SYNC_SECONDS old. The sweep succeeds (exit 0) once it
ran every trial and wrote its report; diverged trials end themselves, failed ones are retried
MAX_FAILURES times, and the report lists both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from pathlib import PurePosixPath

from job import storage
from job.config import TrainConfig, override, validate
from job.errors import ConfigError, UserError
from job.metrics.registry import SELECTION_METRIC, direction
from tune import layout
from tune import space as spaces

MODE = direction(SELECTION_METRIC)  # Tune's mode: "min" or "max", from the metric registry
SCHEDULERS = ("asha", "pbt")
# A failed trial is retried from its last checkpoint this often. Failures here are infrastructure
# (a reclaimed spot node, a lost worker, a storage outage): Tune does not count a failure only when
# Ray records the node's death as a preemption, which races GKE's ~15 s pod grace, so a long sweep
# on spot nodes sees several per trial. Divergence is not a failure: the trial ends (trainable.py).
MAX_FAILURES = 10
# The driver writes Tune's experiment state (which trials finished, the searcher) to storage this
# often, so a crashed or evicted driver reruns at most this much finished work when resubmitted.
STATE_SYNC_SECONDS = 15


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What the Ray cluster can run, node by node, and whether it may grow.

    `cpus`/`gpus` are the nodes it has now, or every node its autoscaler may start when Ray says
    so. `grows_to` is how many trials at once the cluster can grow to when only the user knows
    (`--max-concurrent-trials`): Ray 2.60 does not publish the autoscaler's node groups.
    """

    cpus: tuple[float, ...]
    gpus: tuple[float, ...]
    autoscaling: bool = False  # `cpus`/`gpus` are the autoscaler's nodes, as Ray described them
    grows_to: int | None = None

    @property
    def grows(self) -> bool:
        return self.autoscaling or self.grows_to is not None


def cluster_from(nodes: list[dict], groups: list[tuple[dict, int]] | None, trials: int,
                 grows_to: int | None = None) -> Cluster:
    """The cluster's nodes: those alive now, or every node its autoscaler may start.

    `groups` are the autoscaler's node groups where Ray exposes them (resources of one node, at
    most how many; -1 means no limit, counted as one node per trial). Otherwise `grows_to` (the
    user's `--max-concurrent-trials`) says the cluster may grow to run that many trials at once:
    a KubeRay cluster idles with a 0-CPU head and no worker, so its nodes now say nothing.
    """
    if grows_to is not None and grows_to < 1:
        raise UserError(f"--max-concurrent-trials must be positive, got {grows_to}")
    if groups:
        expanded = [r for r, count in groups for _ in range(trials if count < 0 else count)]
        return Cluster(tuple(r.get("CPU", 0) for r in expanded),
                       tuple(r.get("GPU", 0) for r in expanded), autoscaling=True, grows_to=grows_to)
    return Cluster(tuple(n.get("CPU", 0) for n in nodes), tuple(n.get("GPU", 0) for n in nodes),
                   grows_to=grows_to)


class PlanError(UserError):
    """A plan that can never run on this cluster: resubmitting it fails again (exit 2)."""

    exit_code = 2


@dataclasses.dataclass(frozen=True)
class Resources:
    gpus_per_trial: int
    cpus_per_trial: int
    cpu_replicas: int  # 0 on GPU trials: MirroredStrategy over the trial's GPUs
    concurrent: int
    trusted: bool = False  # taken as given: the nodes they need do not exist yet

    @property
    def replicas(self) -> int:
        return self.gpus_per_trial or self.cpu_replicas


def plan_resources(cluster: Cluster, gpus_per_trial: int | None, cpus_per_trial: int,
                   cpu_replicas: int, trials: int) -> Resources:
    """Resources per trial and how many trials run at once; a UserError if none can ever fit.

    A trial's MirroredStrategy spans one node, so its GPUs (and CPUs) must fit on one node. On a
    cluster whose nodes are all known (those alive, or the autoscaler's groups), that is checked.
    On a cluster that may grow to `grows_to` trials with nodes Ray cannot describe, the explicit
    `--gpus-per-trial`/`--cpus-per-trial` are trusted: the autoscaler starts the nodes for the
    trials Tune queues, and only it knows their size.
    Without GPUs, each trial splits its CPUs into `cpu_replicas` logical devices (default: one
    per CPU it holds); the count is the same for every trial, because TensorFlow fixes a
    process's logical devices once and Ray may reuse a trial's process for the next one.
    """
    if gpus_per_trial is None:
        if cluster.grows_to is not None and not sum(cluster.gpus):
            raise PlanError("--gpus-per-trial is needed on a cluster that grows (--max-concurrent-trials): "
                            "it has no GPU now to tell GPU trials from CPU trials; give 1 (or more) "
                            "for GPU workers, 0 for CPU trials")
        gpus_per_trial = 1 if sum(cluster.gpus) else 0
    if gpus_per_trial < 0 or cpus_per_trial < 1:
        raise PlanError(f"--gpus-per-trial must be >= 0 and --cpus-per-trial >= 1, got "
                        f"{gpus_per_trial} and {cpus_per_trial}")
    if gpus_per_trial and cpu_replicas:
        raise PlanError("--cpu-replicas is for CPU-only trials; GPU trials mirror over their GPUs")
    if not gpus_per_trial:
        cpu_replicas = cpu_replicas or cpus_per_trial
    fits_now = [n for n in zip(cluster.cpus, cluster.gpus)
                if n[0] >= cpus_per_trial and n[1] >= gpus_per_trial]
    if cluster.grows_to is not None and not cluster.autoscaling:
        # Nodes Ray cannot describe: trust the request; at most `grows_to` trials at once.
        return Resources(gpus_per_trial, cpus_per_trial, 0 if gpus_per_trial else cpu_replicas,
                         max(1, min(cluster.grows_to, trials)), trusted=not fits_now)
    largest_gpus, largest_cpus = max(cluster.gpus, default=0), max(cluster.cpus, default=0)
    grow = ("" if cluster.grows else
            "; if the cluster autoscales (KubeRay with workers at 0), pass --max-concurrent-trials "
            "with the most trials its worker groups can hold (their maxReplicas)")
    if gpus_per_trial > largest_gpus:
        can = "can have, with its autoscaler" if cluster.autoscaling else "has"
        raise PlanError(
            f"--gpus-per-trial {gpus_per_trial} is more than the Ray cluster {can}: "
            f"{sum(cluster.gpus):g} GPU(s) in all, {largest_gpus:g} on its largest node (a trial's "
            f"GPUs must share a node); use --gpus-per-trial {int(largest_gpus)}{grow}"
        )
    if not fits_now:
        raise PlanError(f"--cpus-per-trial {cpus_per_trial} is more than the largest node of the Ray "
                        f"cluster has ({largest_cpus:g} CPUs){grow}")
    # Trials run at once: as many as the nodes hold (with an autoscaler, once it has scaled up).
    if gpus_per_trial:
        fits = sum(min(int(g // gpus_per_trial), int(c // cpus_per_trial)) for c, g in fits_now)
    else:
        fits = sum(int(c // cpus_per_trial) for c, _ in fits_now)
    if cluster.grows_to is not None:
        fits = min(fits, cluster.grows_to)
    return Resources(gpus_per_trial, cpus_per_trial, 0 if gpus_per_trial else cpu_replicas,
                     max(1, min(fits, trials)))


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    name: str
    sweep_uri: str
    trials: int
    resources: Resources
    scheduler: str
    grace_period_epochs: int
    epochs: tuple[int, ...]
    kimg: tuple[float, float]
    batches: tuple[int, ...]
    train_images: dict  # dataset_config -> training images
    space: str
    resuming: bool
    autoscaling: bool

    def describe(self) -> str:
        r = self.resources
        device = (f"{r.gpus_per_trial} GPU(s) + {r.cpus_per_trial} CPU(s)" if r.gpus_per_trial
                  else f"{r.cpus_per_trial} CPU(s), {r.cpu_replicas} CPU replica(s)")
        images = ", ".join(f"{n} images ({c})" for c, n in self.train_images.items())
        steps = ", ".join(
            f"{b} ({min(self.train_images.values()) // b} steps/epoch)" for b in self.batches)
        scheduler = (f"ASHA on {SELECTION_METRIC} ({MODE}), grace period {self.grace_period_epochs} epochs"
                     if self.scheduler == "asha" else
                     f"PBT on {SELECTION_METRIC} ({MODE}), perturbing every {self.grace_period_epochs} epochs")
        kimg = (f"{self.kimg[0]:.3g}" if self.kimg[0] == self.kimg[1]
                else f"{self.kimg[0]:.3g}-{self.kimg[1]:.3g}")
        if r.trusted:
            device += " (as given: no node has them yet; the autoscaler adds nodes for waiting trials)"
        return "\n".join([
            f"sweep '{self.name}'{' (resuming)' if self.resuming else ''}: {self.trials} trials, "
            f"{r.concurrent} at a time{' once the autoscaler has added nodes' if self.autoscaling else ''}; "
            f"{scheduler}",
            f"  per trial: {device}; {'/'.join(map(str, self.epochs))} epochs, "
            f"{kimg} kimg",
            f"  global batch {steps} of {images}",
            f"  space: {self.space}",
            f"  storage: {self.sweep_uri} (each trial's run in <trial id>/run)",
        ])


def grace_period(configs: list[TrainConfig], requested: int | None) -> int:
    """ASHA's grace period (PBT's perturbation interval), in epochs.

    By default a quarter of the run, at least one measurement: early GAN metrics are noisy.
    """
    longest = max(c.epochs for c in configs)
    if requested is None:
        requested = max(max(c.metrics_every_epochs for c in configs), longest // 4)
    if not 1 <= requested <= longest:
        raise UserError(f"--grace-period must be between 1 and the trials' {longest} epochs, got {requested}")
    return requested


def check_intervals(configs: list[TrainConfig]) -> None:
    """Every checkpoint Tune keeps must carry the SWD it is ranked by."""
    for c in configs:
        if c.checkpoint_every_epochs % c.metrics_every_epochs:
            raise ConfigError(
                "checkpoint_every_epochs",
                f"{c.checkpoint_every_epochs} is not a multiple of metrics_every_epochs "
                f"{c.metrics_every_epochs}: in a sweep every checkpoint must be a measured epoch",
            )


def run_sweep(
    base: TrainConfig,
    *,
    name: str,
    storage_uri: str,
    num_samples: int = 4,
    gpus_per_trial: int | None = None,
    cpus_per_trial: int = 1,
    max_concurrent_trials: int | None = None,
    space_file: str | None = None,
    scheduler: str = "asha",
    grace_period_epochs: int | None = None,
    top: int = 3,
) -> dict[str, "report.Outcome"]:
    """Check, plan and run (or resume) the sweep; write its report. Returns each trial's outcome.

    The sweep has done its job when it ran every trial and wrote its report, even if some trials
    diverged or failed after their retries (the report lists them). It raises a UserError when it
    could not run (bad input, storage, cluster: exit 1 or 2), when it stopped with trials
    unfinished (exit 1: resubmit to resume), or when no trial produced a result (exit 1 if some
    failed, which a retry may fix; 2 if they all diverged, which a retry repeats).

    Connects to the Ray cluster of `RAY_ADDRESS` (what `ray job submit` sets), to the one this
    process already joined, or starts a local one.
    """
    from tune import report

    if scheduler not in SCHEDULERS:
        raise UserError(f"--scheduler must be one of {list(SCHEDULERS)}, got {scheduler!r}")
    if num_samples < 1:
        raise UserError(f"--num-samples must be positive, got {num_samples}")
    if not name or "/" in name or name != name.strip():
        raise UserError(f"--name {name!r} must be a non-empty name without '/'")
    space = spaces.load_space(space_file) if space_file else None
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
    cluster = _cluster_now(trials_estimate, max_concurrent_trials)
    resources = plan_resources(cluster, gpus_per_trial, cpus_per_trial, base.cpu_replicas,
                               trials_estimate)
    base = validate(override(base, {"cpu_replicas": resources.cpu_replicas}), resources.replicas)
    counts = {base.dataset_config: _train_images(base)}
    space = space or spaces.default_space(base, resources.replicas, counts[base.dataset_config])
    configs = spaces.check(space, base, resources.replicas)
    check_intervals(configs)
    plan = _plan(name, sweep_uri, num_samples, space, configs, cluster, resources, scheduler,
                 grace_period(configs, grace_period_epochs), counts)

    filesystem, path = storage.pyarrow_filesystem(storage_uri)
    experiment = f"{path}/{name}"
    with storage_permissions(sweep_uri):
        make_folders(filesystem, experiment)
        resuming = tune.Tuner.can_restore(experiment, storage_filesystem=filesystem)
    print(dataclasses.replace(plan, resuming=resuming).describe(), flush=True)

    fn = tune.with_resources(
        tune.with_parameters(trainable.run_trial, base=base.to_dict(), sweep_uri=sweep_uri,
                             with_checkpoints=plan.scheduler == "pbt"),
        {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
    )
    # Tune reads its snapshot period from the environment only (TuneController).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(STATE_SYNC_SECONDS))
    with storage_permissions(sweep_uri):
        if resuming:
            tuner = tune.Tuner.restore(experiment, fn, resume_unfinished=True, resume_errored=True,
                                       storage_filesystem=filesystem)
        else:
            tuner = _new_tuner(fn, space, configs, plan, num_samples, path, filesystem)
        results = tuner.fit()
    unfinished = unfinished_trials(results)
    if unfinished:
        raise UserError(f"sweep '{name}' stopped with {len(unfinished)} trial(s) unfinished; run the "
                        "same command again to resume it")
    outcomes = trial_outcomes(results)
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


def trial_outcomes(results) -> dict[str, "report.Outcome"]:
    """How each trial of a Tune ResultGrid ended: finished, diverged (with its reason) or failed."""
    from tune import report
    from tune.trainable import DIVERGED

    outcomes = {}
    for result in results:
        metrics = result.metrics or {}
        trial_id = metrics.get("trial_id") or PurePosixPath(str(result.path)).name
        if result.error is not None:
            lines = [line for line in str(result.error).splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else type(result.error).__name__
            outcomes[trial_id] = report.Outcome(report.FAILED, reason[:500], metrics.get("epoch"))
        elif DIVERGED in metrics:
            outcomes[trial_id] = report.Outcome(report.DIVERGED, metrics[DIVERGED], metrics.get("epoch"))
        else:
            outcomes[trial_id] = report.Outcome(report.FINISHED, "", metrics.get("epoch"))
    return outcomes


def make_folders(filesystem, experiment: str) -> None:
    """The folder markers of the storage path and the sweep, made top down before Ray needs them.

    Ray creates the experiment's folder with pyarrow's recursive `create_dir`, which, when no
    parent folder marker exists, reads the bucket's metadata: `storage.buckets.get`, which the
    README's `roles/storage.objectUser` does not grant. Each non-recursive `create_dir` below
    checks only its parent's marker (an object) and writes its own, so with these in place no
    call of Ray's reaches the bucket itself. Local folders need nothing (`filesystem` is None).
    """
    if filesystem is None:
        return
    parts = experiment.split("/")  # bucket, prefix..., sweep name
    for end in range(2, len(parts) + 1):
        filesystem.create_dir("/".join(parts[:end]), recursive=False)


PERMISSION = re.compile(r"storage\.[a-zA-Z]+\.[a-zA-Z]+")
ROLE_FOR = {
    "storage.buckets.get": "roles/storage.legacyBucketReader (or avoid the call: see README, IAM)",
}


@contextlib.contextmanager
def storage_permissions(sweep_uri: str):
    """A bucket's PERMISSION_DENIED (from pyarrow, under Ray) as a UserError naming the permission."""
    try:
        yield
    except PermissionError as error:
        text = str(error)
        found = PERMISSION.search(text)
        permission = found.group(0) if found else "a storage permission"
        role = ROLE_FOR.get(permission, "roles/storage.objectUser")
        raise UserError(
            f"the bucket refused {permission} for {sweep_uri}: the service account this sweep runs "
            f"as (the pods' Workload Identity, or your gcloud login) needs it on the bucket; "
            f"grant {role}. Storage said: {text.splitlines()[0][:300]}") from None


def _new_tuner(fn, space: spaces.Space, configs: list[TrainConfig], plan: SweepPlan,
               num_samples: int, path: str, filesystem):
    from ray import tune

    from tune import trainable
    from tune.progress import FinishedTrialLines

    return tune.Tuner(
        fn,
        param_space=spaces.to_param_space(space),
        tune_config=tune.TuneConfig(
            metric=SELECTION_METRIC, mode=MODE, num_samples=num_samples,
            scheduler=_scheduler(plan.scheduler, space, configs, plan.grace_period_epochs),
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


def _cluster_now(trials: int, grows_to: int | None) -> Cluster:
    import ray
    from ray._private.state import state  # the autoscaler's config, as Ray Train reads it

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    # None in Ray 2.60 (nothing publishes it); used should a later Ray describe its node groups.
    config = state.get_cluster_config()
    groups = [(dict(g.resources), g.max_count) for g in config.node_group_configs] if config else None
    return cluster_from(nodes, groups, trials, grows_to)


def _train_images(config: TrainConfig) -> int:
    from job.training.data import load_images

    return load_images(config)[1]


def _plan(name, sweep_uri, num_samples, space, configs, cluster, resources, scheduler, grace,
          counts) -> SweepPlan:
    from job.training.plan import make_plan

    kimg = []
    for c in configs:
        if c.dataset_config not in counts:
            counts[c.dataset_config] = _train_images(c)
        # Refuses a batch larger than the training set, with the numbers.
        kimg.append(make_plan(c, counts[c.dataset_config], resources.replicas).total_kimg)
    return SweepPlan(
        name=name, sweep_uri=sweep_uri, trials=num_samples * spaces.grid_points(space),
        resources=resources, scheduler=scheduler, grace_period_epochs=grace,
        epochs=tuple(sorted({c.epochs for c in configs})), kimg=(min(kimg), max(kimg)),
        batches=tuple(sorted({c.global_batch_size for c in configs})), train_images=counts,
        space=spaces.describe(space), resuming=False, autoscaling=cluster.grows,
    )


def _scheduler(kind: str, space: spaces.Space, configs: list[TrainConfig], grace: int):
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    if kind == "asha":
        return ASHAScheduler(time_attr="epoch", max_t=max(c.epochs for c in configs),
                             grace_period=grace)
    mutations = spaces.pbt_mutations(space)
    if not mutations:
        raise UserError(f"PBT needs a searched field it may change mid-run, one of "
                        f"{list(spaces.PBT_MUTABLE)}; the space has none")
    return PopulationBasedTraining(
        time_attr="epoch", perturbation_interval=grace, hyperparam_mutations=mutations,
        custom_explore_fn=spaces.Retie(spaces.ties(space)),
    )
