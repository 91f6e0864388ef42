"""The run's distribution strategy, and which process is the chief (the one that writes the run).

A run of one process mirrors over its GPUs, or over N logical CPUs (`job.training.devices`). A
run of `num_workers` processes trains under MultiWorkerMirroredStrategy; `role` reads TF_CONFIG
the way TensorFlow's cluster resolver does, so write sites can ask `role().is_chief` (big_vision
guards every write with `jax.process_index() == 0`).
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
    """The strategy `fit` trains under.

    One worker (`num_workers` = 1, no multi-worker TF_CONFIG): MirroredStrategy over this
    process's GPUs or `cpu_replicas` logical CPUs. Several: MultiWorkerMirroredStrategy over the
    TF_CONFIG cluster (Ray Train's TensorflowTrainer writes it), whose collectives give up after
    `collective_timeout_seconds`. It must be made before this process runs any TF op.

    Raises:
        ConfigError (exit 2): TF_CONFIG names another number of training processes than
            `num_workers`.
        UserError: the logical CPUs asked for do not exist.
    """
    cluster = role()
    if cluster.workers != config.num_workers:
        raise ConfigError("num_workers", f"is {config.num_workers} but TF_CONFIG names "
                          f"{cluster.workers} training process(es): every worker needs TF_CONFIG "
                          "naming all of them (Ray Train's TensorflowTrainer writes it)")
    if cluster.workers > 1:
        return multi_worker_strategy(config.collective_timeout_seconds)
    return strategy_for(config.cpu_replicas)


@functools.lru_cache(maxsize=None)
def multi_worker_strategy(timeout_seconds: float) -> tf.distribute.MultiWorkerMirroredStrategy:
    """One MultiWorkerMirroredStrategy per process (TensorFlow allows one: collectives are
    configured once, at its creation)."""
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_seconds)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


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
