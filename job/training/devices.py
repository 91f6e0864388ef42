"""Which devices a run uses: all visible GPUs, or the CPU split into N logical devices (the
strategy over them: `job.training.strategy`).

Splitting the CPU lets the multi-replica MirroredStrategy path run (and be tested) on any machine.
TensorFlow fixes logical devices when it initialises, so this must run before anything else
touches TF; afterwards it can only check that what exists is enough.
"""

from __future__ import annotations

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


def describe(strategy: tf.distribute.Strategy) -> str:
    """The run's one devices line, e.g. `devices: 2 replicas on /cpu:0, /cpu:1 (logical CPU
    devices; no GPU visible)`, `devices: 1 replica on /gpu:0 (NVIDIA L4)`, or for one worker of
    a group `devices: 4 replicas in sync, this worker's 1 on /gpu:0 (NVIDIA L4)`."""
    names = [d.split("device:")[-1].lower() for d in strategy.extended.worker_devices]
    gpus = tf.config.list_physical_devices("GPU")
    if any(n.startswith("gpu") for n in names):
        kind = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    else:
        kind = ("logical CPU devices; " if len(names) > 1 else "CPU; ") + (
            f"{len(gpus)} GPU(s) not used" if gpus else "no GPU visible")
    count = f"{len(names)} replica{'s' if len(names) != 1 else ''}"
    if strategy.num_replicas_in_sync > len(names):  # MultiWorkerMirroredStrategy: the others elsewhere
        count = f"{strategy.num_replicas_in_sync} replicas in sync, this worker's {len(names)}"
    return f"devices: {count} on {', '.join('/' + n for n in names)} ({kind})"
