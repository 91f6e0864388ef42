"""What one trial needs and what the Ray cluster holds: per-trial resources and how many at once.

Pure arithmetic over the cluster's nodes (`Cluster`), except `cluster_now`, which asks Ray. A
request that can never run is a `PlanError` (exit 2: resubmitting fails again).
"""

from __future__ import annotations

import dataclasses

from job.errors import UserError


class PlanError(UserError):
    """A plan that can never run on this cluster: resubmitting it fails again (exit 2)."""

    exit_code = 2


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
        raise PlanError(f"--max-concurrent-trials must be positive, got {grows_to}")
    if groups:
        expanded = [r for r, count in groups for _ in range(trials if count < 0 else count)]
        return Cluster(tuple(r.get("CPU", 0) for r in expanded),
                       tuple(r.get("GPU", 0) for r in expanded), autoscaling=True, grows_to=grows_to)
    return Cluster(tuple(n.get("CPU", 0) for n in nodes), tuple(n.get("GPU", 0) for n in nodes),
                   grows_to=grows_to)


def cluster_now(trials: int, grows_to: int | None) -> Cluster:
    """The cluster of the Ray this process joined (`ray.init` first)."""
    import ray
    from ray._private.state import state  # the autoscaler's config, as Ray Train reads it

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    # None in Ray 2.60 (nothing publishes it); used should a later Ray describe its node groups.
    config = state.get_cluster_config()
    groups = [(dict(g.resources), g.max_count) for g in config.node_group_configs] if config else None
    return cluster_from(nodes, groups, trials, grows_to)


@dataclasses.dataclass(frozen=True)
class Resources:
    """One trial's resources: its GPUs and CPUs (per worker when `workers` > 1: each worker
    is one Ray Train process, on any node), and how many trials run at once."""

    gpus_per_trial: int
    cpus_per_trial: int
    cpu_replicas: int  # 0 on GPU trials: MirroredStrategy over the trial's GPUs
    concurrent: int
    trusted: bool = False  # taken as given: the nodes they need do not exist yet
    workers: int = 1  # >1: the trial is a Ray Train run of this many workers

    @property
    def replicas(self) -> int:
        return self.workers * (self.gpus_per_trial or self.cpu_replicas)

    def describe(self) -> str:
        """'1 GPU(s) + 6 CPU(s)' or '2 CPU(s), 2 CPU replica(s)' (per worker: '2 workers x (...)'),
        and whether it was trusted."""
        device = (f"{self.gpus_per_trial} GPU(s) + {self.cpus_per_trial} CPU(s)" if self.gpus_per_trial
                  else f"{self.cpus_per_trial} CPU(s), {self.cpu_replicas} CPU replica(s)")
        if self.workers > 1:
            device = f"{self.workers} Ray Train workers x ({device}), {self.replicas} replicas"
        if self.trusted:
            device += " (as given: no node has them yet; the autoscaler adds nodes for waiting trials)"
        return device


def plan_resources(cluster: Cluster, gpus_per_trial: int | None, cpus_per_trial: int,
                   cpu_replicas: int, trials: int, workers: int = 1) -> Resources:
    """Resources per trial and how many trials run at once; a PlanError if none can ever fit.

    A trial's MirroredStrategy spans one node, so its GPUs (and CPUs) must fit on one node.
    A trial of `workers` > 1 is a Ray Train run: `gpus_per_trial`/`cpus_per_trial` are each
    worker's, each worker must fit on one node, and a trial needs `workers` such places at
    once (on one node or several); each worker is one replica on CPU. On a
    cluster whose nodes are all known (those alive, or the autoscaler's groups), that is checked.
    On a cluster that may grow to `grows_to` trials with nodes Ray cannot describe, the explicit
    `--gpus-per-trial`/`--cpus-per-trial` are trusted: the autoscaler starts the nodes for the
    trials Tune queues, and only it knows their size.
    Without GPUs, each trial splits its CPUs into `cpu_replicas` logical devices (default: one
    per CPU it holds); the count is the same for every trial, because TensorFlow fixes a
    process's logical devices once and Ray may reuse a trial's process for the next one.
    """
    def gpu_flag(value) -> str:  # the flag a user gives: the sweep's, or a group's config field
        return f"--gpus-per-trial {value}" if workers == 1 else f"--set gpus_per_worker={value}"

    def cpu_flag(value) -> str:
        return f"--cpus-per-trial {value}" if workers == 1 else f"--set cpus_per_worker={value}"

    if gpus_per_trial is None:
        if cluster.grows_to is not None and not sum(cluster.gpus):
            raise PlanError("--gpus-per-trial is needed on a cluster that grows (--max-concurrent-trials): "
                            "it has no GPU now to tell GPU trials from CPU trials; give 1 (or more) "
                            "for GPU workers, 0 for CPU trials")
        gpus_per_trial = 1 if sum(cluster.gpus) else 0
    if gpus_per_trial < 0 or cpus_per_trial < 1:
        raise PlanError(f"{gpu_flag(gpus_per_trial)}, {cpu_flag(cpus_per_trial)}: GPUs must be >= 0 and "
                        "CPUs >= 1")
    if gpus_per_trial and cpu_replicas:
        raise PlanError("--cpu-replicas is for CPU-only trials; GPU trials mirror over their GPUs")
    if not gpus_per_trial:
        # MultiWorkerMirroredStrategy mirrors over a worker's GPUs, or its one CPU device.
        cpu_replicas = 1 if workers > 1 else cpu_replicas or cpus_per_trial
    fits_now = [n for n in zip(cluster.cpus, cluster.gpus)
                if n[0] >= cpus_per_trial and n[1] >= gpus_per_trial]
    if cluster.grows_to is not None and not cluster.autoscaling:
        # Nodes Ray cannot describe: trust the request; at most `grows_to` trials at once.
        return Resources(gpus_per_trial, cpus_per_trial, 0 if gpus_per_trial else cpu_replicas,
                         max(1, min(cluster.grows_to, trials)), trusted=not fits_now, workers=workers)
    largest_gpus, largest_cpus = max(cluster.gpus, default=0), max(cluster.cpus, default=0)
    grow = ("" if cluster.grows else
            "; if the cluster autoscales (KubeRay with workers at 0), pass --max-concurrent-trials "
            "with the most trials its worker groups can hold (their maxReplicas)")
    if gpus_per_trial > largest_gpus:
        can = "can have, with its autoscaler" if cluster.autoscaling else "has"
        raise PlanError(
            f"{gpu_flag(gpus_per_trial)} is more than the Ray cluster {can}: "
            f"{sum(cluster.gpus):g} GPU(s) in all, {largest_gpus:g} on its largest node (a "
            f"{'worker' if workers > 1 else 'trial'}'s GPUs must share a node); use "
            f"{gpu_flag(int(largest_gpus))}{grow}"
        )
    if not fits_now:
        raise PlanError(f"{cpu_flag(cpus_per_trial)} is more than the largest node of the Ray "
                        f"cluster has ({largest_cpus:g} CPUs){grow}")
    # Trials run at once: as many as the nodes hold (with an autoscaler, once it has scaled up).
    if gpus_per_trial:
        places = sum(min(int(g // gpus_per_trial), int(c // cpus_per_trial)) for c, g in fits_now)
    else:
        places = sum(int(c // cpus_per_trial) for c, _ in fits_now)
    if places < workers:
        each = f"{gpus_per_trial} GPU(s) + " * bool(gpus_per_trial) + f"{cpus_per_trial} CPU(s)"
        raise PlanError(f"a trial of {workers} workers needs {workers} places of {each} at once; the "
                        f"Ray cluster {'can hold, with its autoscaler,' if cluster.autoscaling else 'holds'} "
                        f"{places}: lower --set num_workers=N, or {gpu_flag('N')} / {cpu_flag('N')}{grow}")
    fits = places // workers
    if cluster.grows_to is not None:
        fits = min(fits, cluster.grows_to)
    return Resources(gpus_per_trial, cpus_per_trial, 0 if gpus_per_trial else cpu_replicas,
                     max(1, min(fits, trials)), workers=workers)
