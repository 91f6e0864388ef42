"""The run's distribution strategy, and which process is the chief (the one that writes the run).

Today a run is one process: MirroredStrategy over its GPUs, or over N logical CPUs
(`job.training.devices`). The seam for a multi-worker backend (the multi-node issue) is here:
`role` reads TF_CONFIG the way TensorFlow's cluster resolver does, so write sites can ask
`role().is_chief` (big_vision guards every write with `jax.process_index() == 0`), and
`make_strategy` is where MultiWorkerMirroredStrategy goes. Until then a TF_CONFIG naming several
workers is refused: each worker would train alone and write the same run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Mapping

import tensorflow as tf

from job.config import TrainConfig
from job.errors import ConfigError
from job.training.devices import replica_devices

TRAINING_TASKS = ("chief", "worker")  # TF_CONFIG task types that train (not "ps", "evaluator")


@dataclasses.dataclass(frozen=True)
class Role:
    """This process in its cluster (one process without TF_CONFIG: the chief of one)."""

    task_type: str  # "chief", "worker", "ps" or "evaluator"
    task_index: int
    workers: int  # processes that train: the chief and the workers
    is_chief: bool  # writes the run: the "chief" task, or worker 0 of a cluster without one


def role(environ: Mapping[str, str] = os.environ) -> Role:
    """This process's role, from TF_CONFIG ({"cluster": {type: [host:port]}, "task": {"type",
    "index"}}) when set.

    Raises:
        ConfigError (exit 2): TF_CONFIG is set but is not such a JSON object.
    """
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return Role("chief", 0, 1, True)
    try:
        spec = json.loads(text)
        cluster, task = spec.get("cluster", {}), spec.get("task", {})
        task_type, index = str(task["type"]), int(task.get("index", 0))
        workers = sum(len(cluster.get(kind, [])) for kind in TRAINING_TASKS)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ConfigError("TF_CONFIG", f"{text[:200]!r} is not a TensorFlow cluster spec: "
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                          '"index": 0}}') from None
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)
    return Role(task_type, index, max(workers, 1), chief)


def make_strategy(config: TrainConfig) -> tf.distribute.Strategy:
    """The strategy `fit` trains under: this process's devices (`config.cpu_replicas`).

    Raises:
        ConfigError (exit 2): TF_CONFIG names more than one training process (multi-worker
            training is not built yet).
        UserError: the logical CPUs asked for do not exist.
    """
    cluster = role()
    if cluster.workers > 1:
        raise ConfigError("TF_CONFIG", f"names {cluster.workers} training processes; this job "
                          "trains on one process (its GPUs, or --cpu-replicas); unset TF_CONFIG")
    return strategy_for(config.cpu_replicas)


@functools.lru_cache(maxsize=None)
def _strategy(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    return tf.distribute.MirroredStrategy(list(devices))


def strategy_for(cpu_replicas: int) -> tf.distribute.MirroredStrategy:
    """One MirroredStrategy per device set per process.

    A second MirroredStrategy over the same devices in one process reuses collective instance keys
    and aborts with "Shape mismatch in the collective instance" (seen on TF 2.21), so runs in the
    same process (tests, Ray's reused actors) share one.
    """
    return _strategy(tuple(replica_devices(cpu_replicas)))


def one_replica_strategy() -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy on one device: the first GPU if any, else the first CPU (benchmarks
    price the strategy wrapper and single-device speed with it)."""
    gpus = tf.config.list_logical_devices("GPU")
    return _strategy((gpus[0].name if gpus else replica_devices(1)[0],))
