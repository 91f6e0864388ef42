"""The sweep's plan: what every trial will train, checked and printed before the first starts.

Pure apart from `train_images`, which reads the prepared dataset's description once per
(data_dir, resolution, classes). A plan that can never run is refused with the numbers.
"""

from __future__ import annotations

import dataclasses

from job.config import TrainConfig, check_name
from job.errors import ConfigError
from job.metrics.registry import SELECTION_METRIC, direction
from tune import space as spaces
from tune.resources import PlanError, Resources

MODE = direction(SELECTION_METRIC)  # Tune's mode: "min" or "max", from the metric registry
SCHEDULERS = ("asha", "pbt")


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
    train_images: dict  # dataset (resolution, classes) -> training images
    space: str
    resuming: bool
    autoscaling: bool

    def describe(self) -> str:
        r = self.resources
        images = ", ".join(f"{n} images ({c})" for c, n in self.train_images.items())
        steps = ", ".join(
            f"{b} ({min(self.train_images.values()) // b} steps/epoch)" for b in self.batches)
        scheduler = (f"ASHA on {SELECTION_METRIC} ({MODE}), grace period {self.grace_period_epochs} epochs"
                     if self.scheduler == "asha" else
                     f"PBT on {SELECTION_METRIC} ({MODE}), perturbing every {self.grace_period_epochs} epochs")
        kimg = (f"{self.kimg[0]:.3g}" if self.kimg[0] == self.kimg[1]
                else f"{self.kimg[0]:.3g}-{self.kimg[1]:.3g}")
        return "\n".join([
            f"sweep '{self.name}'{' (resuming)' if self.resuming else ''}: {self.trials} trials, "
            f"{r.concurrent} at a time{' once the autoscaler has added nodes' if self.autoscaling else ''}; "
            f"{scheduler}",
            f"  per trial: {r.describe()}; {'/'.join(map(str, self.epochs))} epochs, {kimg} kimg",
            f"  global batch {steps} of {images}",
            f"  space: {self.space}",
            f"  storage: {self.sweep_uri} (each trial's run in <trial id>/run)",
        ])


def check_arguments(name: str, num_samples: int, scheduler: str) -> None:
    """The sweep's own arguments, before anything is touched (PlanError or ConfigError: exit 2).

    The sweep's name is checked as a run's is (`check_name`): it becomes one folder of a URI."""
    if scheduler not in SCHEDULERS:
        raise PlanError(f"--scheduler must be one of {list(SCHEDULERS)}, got {scheduler!r}")
    if num_samples < 1:
        raise PlanError(f"--num-samples must be positive, got {num_samples}")
    check_name("--name", name)


def check_group(workers: int, scheduler: str, gpus_per_trial: int | None,
                cpus_per_trial: int | None) -> None:
    """A sweep whose trials are `workers`-worker Ray Train runs (PlanError: exit 2).

    Its workers' resources are the config's (`gpus_per_worker`, `cpus_per_worker`): the same
    fields as `covidct train --num-workers` and the manifests read, not the sweep's flags.
    """
    if scheduler == "pbt":
        raise PlanError(f"--scheduler pbt cannot run trials of {workers} workers: PBT hands one "
                        "trial's checkpoint to another trial's process, a worker group resumes "
                        "from its own run folder only; use --scheduler asha")
    if gpus_per_trial is not None or cpus_per_trial is not None:
        raise PlanError(f"a trial of {workers} workers asks per worker: give --set gpus_per_worker=N "
                        "--set cpus_per_worker=N, not --gpus-per-trial/--cpus-per-trial")


def grace_period(configs: list[TrainConfig], requested: int | None) -> int:
    """ASHA's grace period (PBT's perturbation interval), in epochs.

    By default a quarter of the run, at least one measurement: early GAN metrics are noisy.
    """
    longest = max(c.epochs for c in configs)
    if requested is None:
        requested = max(max(c.metrics_every_epochs for c in configs), longest // 4)
    if not 1 <= requested <= longest:
        raise PlanError(f"--grace-period must be between 1 and the trials' {longest} epochs, got {requested}")
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


def dataset_key(config: TrainConfig) -> str:
    """What fixes a trial's training set: its resolution and its classes."""
    return f"covid_ct/{config.dataset_config}" + (f", {config.labels}" if config.labels else "")


def train_images(config: TrainConfig) -> int:
    """Training images of `config`'s dataset and classes, from the builder's info and labels
    (`job.training.data.describe`: no image is decoded)."""
    from job.training.data import describe

    return describe(config).train_images


def make_sweep_plan(name: str, sweep_uri: str, num_samples: int, space: spaces.Space,
                    configs: list[TrainConfig], resources: Resources, scheduler: str, grace: int,
                    counts: dict[str, int], autoscaling: bool, count=train_images) -> SweepPlan:
    """The plan of `configs` (every config the space can draw, `spaces.check`); `counts` holds
    the training images already known per `dataset_key`, `count` finds the others.

    Raises:
        ConfigError (exit 2): a batch larger than its training set, or one the replicas cannot
            split (`job.training.plan.make_plan`, with the numbers).
    """
    from job.training.plan import make_plan

    kimg = set()
    for c in set(configs):
        key = dataset_key(c)
        if key not in counts:
            counts[key] = count(c)
        kimg.add(make_plan(c, counts[key], resources.replicas).total_kimg)
    return SweepPlan(
        name=name, sweep_uri=sweep_uri, trials=num_samples * spaces.grid_points(space),
        resources=resources, scheduler=scheduler, grace_period_epochs=grace,
        epochs=tuple(sorted({c.epochs for c in configs})), kimg=(min(kimg), max(kimg)),
        batches=tuple(sorted({c.global_batch_size for c in configs})), train_images=counts,
        space=spaces.describe(space), resuming=False, autoscaling=autoscaling,
    )
