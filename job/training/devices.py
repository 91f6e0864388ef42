"""Which devices a run uses: all visible GPUs, or the CPU split into N logical devices.

Splitting the CPU lets the multi-replica MirroredStrategy path run (and be tested) on any machine.
TensorFlow fixes logical devices when it initialises, so this must run before anything else
touches TF; afterwards it can only check that what exists is enough.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from job.errors import UserError


def configure_cpu_replicas(n: int) -> None:
    """Split the first CPU into `n` logical devices (no-op for n <= 1 or if already split to >= n)."""
    if n <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have < n:
            raise UserError(
                f"cannot split the CPU into {n} logical devices: TensorFlow already initialised "
                f"with {have}; start a new process"
            ) from None


def replica_devices(cpu_replicas: int) -> list[str]:
    """The device names a MirroredStrategy should mirror over.

    GPUs win when present; otherwise `cpu_replicas` logical CPUs (which must exist: a
    MirroredStrategy over a missing /cpu:1 silently runs both replicas on /cpu:0).
    """
    gpus = tf.config.list_logical_devices("GPU")
    if gpus and cpu_replicas <= 0:
        return [d.name for d in gpus]
    n = max(cpu_replicas, 1)
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < n:
        raise UserError(
            f"{n} CPU replicas requested but only {len(cpus)} logical CPU device(s) exist; "
            "call configure_cpu_replicas before TensorFlow initialises"
        )
    return [d.name for d in cpus[:n]]


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
