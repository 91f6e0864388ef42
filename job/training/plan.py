"""The plan of a run: how the data, the batch and the devices combine, checked before training.

`make_plan` is pure (numbers in, a `Plan` out), so `covidct train`, the sweep planner and the
tests refuse a batch the data or batch norm cannot feed before any model is built.
"""

from __future__ import annotations

import dataclasses

from job.config import TrainConfig
from job.config.checks import check_replicas
from job.training.capacity import capacity
from job.errors import ConfigError
from job.training.step import use_xla


@dataclasses.dataclass(frozen=True)
class Plan:
    train_images: int
    replicas: int
    steps_per_epoch: int
    per_replica_batch: int
    kimg_per_epoch: float
    total_kimg: float
    xla: bool
    class_counts: tuple[tuple[str, int], ...] = ()  # training images per class, in class order

    def describe(self, config: TrainConfig) -> str:
        """The run's plan line: data, batch, devices, and the models' figures (as --dry-run)."""
        return (
            f"plan: {self.train_images} training images{self._classes(config)}, "
            f"global batch {config.global_batch_size} "
            f"({self.per_replica_batch} per replica x {self.replicas} replicas), "
            f"{self.steps_per_epoch} steps/epoch, {config.epochs} epochs = "
            f"{self.total_kimg:.1f} kimg, XLA {'on' if self.xla else 'off'}; "
            f"{capacity(config).short()}"
        )


    def _classes(self, config: TrainConfig) -> str:
        if not self.class_counts:
            return ""
        each = ", ".join(f"{name} {n}" for name, n in self.class_counts)
        return f" ({each}{'; class-conditional' if config.conditional else ''})"


def make_plan(config: TrainConfig, train_images: int, replicas: int,
              class_counts: dict[str, int] | None = None) -> Plan:
    """Steps and images for the run.

    Raises:
        ConfigError (exit 2): a global batch larger than the training set, or one the replicas
            or batch norm cannot split.
    """
    gb = config.global_batch_size
    if gb > train_images:
        raise ConfigError(
            "global_batch_size",
            f"{gb} is larger than the training set ({train_images} images): no full batch per "
            f"epoch; use --set global_batch_size={max(2 * replicas, train_images // 4)}")
    check_replicas(config, replicas)
    steps = train_images // gb
    return Plan(train_images, replicas, steps, gb // replicas, steps * gb / 1000,
                steps * gb * config.epochs / 1000, use_xla(config, replicas),
                tuple((class_counts or {}).items()))
