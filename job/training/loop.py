"""One training run: `fit(config, callbacks)` -> final metrics.

The loop knows the strategy, the models, the data and the run folder; it reports each epoch to
callbacks (the CLI's progress line, Ray Tune's reporter) and knows nothing of Ray or buckets.

Start-up is resume-first: the newest complete checkpoint at the run URI is loaded before anything
trains, so the same command continues after a crash or a preemption; a run URI that holds a run
with another identity (models, data) is refused. Checkpoints are made every
`checkpoint_every_epochs` and every `checkpoint_every_minutes`, written locally and uploaded in
the background (`job.checkpoint`). SIGTERM is handled at the next step boundary
(`job.training.preemption`); a SIGTERM during an epoch's last step finishes that epoch first, so
a checkpoint never sits at the end of an epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

from job import run, storage
from job.checkpoint import CheckpointStore
from job.config import TrainConfig
from job.config.checks import checked
from job.deadline import Deadline, DeadlinePassed
from job.errors import Diverged, Preempted
from job.metrics import inception, registry
from job.metrics.heldout import HeldOutScorer
from job.training import data
from job.training.devices import configure_cpu_replicas
from job.training.devices import describe as describe_devices
from job.training.eta import Eta
from job.training.outputs import RunFiles
from job.training.plan import make_plan
from job.training.preemption import SigtermFlag, finish_upload, preempt
from job.training.resume import resume
from job.training.standing_stats import standing_statistics
from job.training.step import Stepper, build_state, make_generate, make_train_step
from job.training import group
from job.training.strategy import Role, make_strategy, role

log = logging.getLogger("covidct")


@dataclasses.dataclass(frozen=True)
class EpochReport:
    """What a callback sees after each epoch."""

    epoch: int  # completed epochs
    epochs: int
    metrics: dict
    checkpoint_dir: str | None  # local folder of a checkpoint written this epoch, complete at the run URI
    run_uri: str


Callback = Callable[[EpochReport], None]
StepHook = Callable[[int, int], None]  # (epoch, step) just before that step runs


def _interval(epoch: int, every: int, last: int) -> bool:
    return epoch % every == 0 or epoch == last


def fit(
    config: TrainConfig,
    callbacks: Iterable[Callback] = (),
    resume_from: str | None = None,
    on_step: StepHook | None = None,
    takeover: bool = False,
) -> dict:
    """Train (or continue) the run described by `config`; returns the last epoch's metrics.

    Args:
        config: a `TrainConfig`, validated where it entered (`resolve`, a trial); one that
            is not (built by `override`) is validated here.
        callbacks: called after every epoch with an `EpochReport`.
        resume_from: a local checkpoint folder to start from instead of the run URI's newest
            (Ray Tune hands trials their checkpoint this way).
        on_step: called with (epoch, step) just before each step (stylegan2-ada's progress
            hook): profilers and the preemption tests plug in here.
        takeover: take the run's lease from its holder at once (a writer known to be dead)
            instead of waiting up to `lease_wait_seconds` for it to lapse.

    Raises:
        Preempted: SIGTERM arrived (exit 143); the message says which checkpoint counts.
        Diverged: a non-finite loss (exit 2: a retry from the same state repeats it).
        ConfigError: a bad value, a changed run identity, a batch larger than the data (exit 2).
        StorageError: the run URI or data_dir cannot be used (exit 1).
        LeaseHeld: another live writer holds the run's lease (exit 1, naming it).
    """
    config = checked(config)
    cluster = role()
    # Of a multi-worker group only the chief writes the run URI (`group`): the others write
    # scratch folders and take the chief's restored state.
    with group.writer_config(config, cluster) as config:
        storage.check_reachable(config.resolved_run_uri)
        # One writer per run URI: nothing below writes, prunes or promotes before this process
        # holds the lease (a replacement pod, a rescheduled trial or a second `covidct train`
        # waits here).
        lease = storage.Lease(config.resolved_run_uri, run.LEASE, config.lease_seconds)
        lease.acquire(config.lease_wait_seconds, takeover)
        try:
            return _train(config, lease, callbacks, resume_from if cluster.is_chief else None,
                          on_step, cluster)
        except Preempted:
            lease.release(seconds=1.0)  # the grace budget is spent; a lease left behind lapses
            raise
        finally:
            lease.release()


def _train(config: TrainConfig, lease: storage.Lease, callbacks: Iterable[Callback],
           resume_from: str | None, on_step: StepHook | None, cluster: Role) -> dict:
    """`fit` under the run's lease."""
    configure_cpu_replicas(config.cpu_replicas)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config)
    replicas = strategy.num_replicas_in_sync
    log.info(describe_devices(strategy))

    dataset = data.describe(config)  # the dataset, opened once for the whole run
    images, count = data.load_images(config, dataset=dataset)
    names, counts = dataset.class_names, dataset.class_counts
    plan = make_plan(config, count, replicas, counts)  # with the checks that need the replicas
    log.info(plan.describe(config))

    deadline = Deadline()  # armed by SIGTERM: every wait below ends within the grace budget
    files = RunFiles(config, deadline)
    files.record_config()
    store = CheckpointStore(files.mirror, config.keep_checkpoints, lease, config.global_batch_size)
    state = build_state(config, strategy)
    ckpt = state.checkpoint()
    resume(config, store, state, resume_from)
    votes = None
    if cluster.workers > 1:
        group.adopt_chief_state(strategy, state.variables(), cluster.is_chief)
        votes = group.Votes(strategy)
    # A step's collectives wait for every worker: a lost one ends this one with exit 1.
    in_step = group.Collectives("training a step") if votes is not None else contextlib.nullcontext()
    if int(state.step.numpy()) >= plan.steps_per_epoch:
        # Written by a version that saved after an epoch's last step: that epoch is trained.
        state.epoch.assign_add(1)
        state.step.assign(0)
    start_epoch, skip = int(state.epoch.numpy()), int(state.step.numpy())
    files.resume_history(start_epoch)
    if start_epoch >= config.epochs:
        log.info(f"run already complete: {start_epoch}/{config.epochs} epochs")

    stepper = Stepper(config, make_train_step(config, state, strategy),
                      images_seen=(start_epoch * plan.steps_per_epoch + skip) * config.global_batch_size)
    generate = make_generate(state)
    real = data.real_sample(images, config.metric_num_images)
    real_labels = data.real_sample_labels(images, config.metric_num_images)
    grid_z = data.fixed_noise(config, 36 if config.height * config.width <= 128 * 128 else 16)
    class_ids = [names.index(name) for name in counts]
    grid_y = data.grid_labels(class_ids, len(grid_z))
    grid_classes = {i: names[i] for i in class_ids} if config.conditional else None
    metric_z = data.fixed_noise(config, config.metric_num_images, salt=1)
    extractor = inception.extractor(config.inception_weights)
    # Every metrics epoch also scores against the hold-out split (real scans the run never sees),
    # beside its real floor: what picks the best checkpoint (registry.SELECTION_METRIC).
    heldout = HeldOutScorer(real, data.load_holdout(config, dataset), seed=config.seed)
    selection = registry.SELECTION_METRIC
    best = store.best()
    best_value = best[1] if best is not None else None
    good_epoch = start_epoch
    last = {}
    eta = Eta(config.epochs, start_epoch)
    saved_at = time.monotonic()

    with SigtermFlag(config.grace_seconds, deadline) as sigterm:
        batches = iter(strategy.experimental_distribute_dataset(
            data.run_batches(images, config, start_epoch, skip_batches=skip)))
        try:
            for epoch in range(start_epoch, config.epochs):
                t0 = time.perf_counter()
                totals, steps = None, 0
                resumed = skip if epoch == start_epoch else 0
                for _ in range(plan.steps_per_epoch - resumed):
                    step = int(state.step.numpy())
                    minutes = config.checkpoint_every_minutes
                    stop, save = sigterm.raised, bool(
                        minutes and time.monotonic() - saved_at >= 60 * minutes and step
                        and not store.uploading)
                    if votes is not None:  # the group stops or saves at the same step
                        stop, save = votes(stop, save and cluster.is_chief)
                        if stop:
                            sigterm.join()
                    if stop:
                        raise preempt(store, ckpt, epoch, step, sigterm, {"reason": "SIGTERM"})
                    if save:
                        store.save(ckpt, epoch, step, {"reason": "wall clock"}, deadline=deadline)
                        saved_at = time.monotonic()
                    if on_step is not None:
                        on_step(epoch, step)
                    with in_step:
                        out = stepper(next(batches))
                    totals = out if totals is None else {k: totals[k] + out[k] for k in out}
                    steps += 1
                    state.step.assign_add(1)
                done = epoch + 1
                seconds = time.perf_counter() - t0
                m = {k: float(v.numpy()) / steps for k, v in totals.items()}
                if not all(math.isfinite(v) for v in m.values()):
                    raise Diverged(
                        f"non-finite loss in epoch {done} ({m}); epochs {good_epoch + 1}..{done} "
                        f"since the last checkpoint at epoch {good_epoch} are lost, that checkpoint "
                        "is intact. A retry from it with the same settings diverges again: continue "
                        "from an earlier checkpoint with a lower learning rate (--set g_lr=... d_lr=...)",
                        epoch=done, last_good_epoch=good_epoch)
                state.epoch.assign(done)
                state.step.assign(0)
                m["images_per_second"] = steps * config.global_batch_size / seconds
                m["kimg"] = done * plan.kimg_per_epoch
                m["seconds"] = seconds

                preempted = sigterm.raised  # arrived during the last step: no time for metrics
                if votes is not None:
                    (preempted,) = votes(preempted)
                    if preempted:
                        sigterm.join()
                metrics_due = _interval(done, config.metrics_every_epochs, config.epochs) and not preempted
                samples_due = _interval(done, config.sample_every_epochs, config.epochs) and not preempted
                checkpoint_due = _interval(done, config.checkpoint_every_epochs, config.epochs)
                if (metrics_due or samples_due or checkpoint_due) and not preempted:
                    # The EMA generator draws (and is saved) with batch-norm statistics of its own
                    # output; the next step copies the raw generator's back, so training is unchanged.
                    standing_statistics(state.ema_generator, config, class_ids)
                if metrics_due:
                    fake = _generate_all(generate, metric_z, real_labels[: len(real)])
                    m.update(registry.compute(registry.run_metrics(extractor is not None), real,
                                              fake, seed=config.seed, extractor=extractor))
                    m.update(heldout(fake))
                if samples_due:
                    files.save_samples(done, generate(grid_z, grid_y).numpy(), grid_classes,
                                       grid_y.numpy())
                lease.check()  # a writer that lost its run to another writes no more lines
                files.log_metrics(done, m)
                if preempted:
                    raise preempt(store, ckpt, done, 0, sigterm, {"reason": "SIGTERM", "metrics": m})

                checkpoint_dir = None
                if checkpoint_due:
                    value = m.get(selection)
                    better = value is not None and registry.is_better(selection, value, best_value)
                    checkpoint_dir = str(store.save(ckpt, done, 0, {"metrics": m},
                                                    best=(selection, value) if better else None,
                                                    deadline=deadline))
                    best_value = value if better else best_value
                    good_epoch, saved_at = done, time.monotonic()
                if checkpoint_dir is not None and callbacks:
                    # A callback (Ray Tune) may end the run as soon as it has the result: it sees
                    # a checkpoint only once it is complete at the run URI, where `best` looks.
                    finish_upload(store, deadline)
                eta.update(done)
                log.info(_progress_line(done, config.epochs, m, eta.text()))
                report = EpochReport(done, config.epochs, m, checkpoint_dir, files.uri)
                for callback in callbacks:
                    callback(report)
                last = m
            finish_upload(store, deadline)  # the last checkpoint is complete in the run URI
            if sigterm.raised:  # arrived after the last step: the next start finds the run complete
                raise preempt(store, ckpt, config.epochs, 0, sigterm, {"reason": "SIGTERM"})
        except Preempted:
            raise  # `preempt` spent the grace budget; waiting longer would end in SIGKILL
        except DeadlinePassed:  # a wait on the bucket outlived the grace budget: leave now
            raise preempt(store, ckpt, int(state.epoch.numpy()), int(state.step.numpy()), sigterm,
                          {"reason": "SIGTERM"}) from None
        except BaseException:
            # Let the last good checkpoint's upload finish; its own failure must not hide this one.
            store.settle(timeout=config.storage_retry_seconds, deadline=deadline)
            raise

    if start_epoch >= config.epochs:  # nothing trained: the last epoch did not measure them
        standing_statistics(state.ema_generator, config, class_ids)
    files.export(state.ema_generator)
    files.close()
    if last:
        log.info(
            f"done: {config.epochs} epochs, {last['kimg']:.1f} kimg, "
            f"{selection} {last.get(selection, float('nan')):.2f}, outputs in {files.uri}"
        )
    return last


def _generate_all(generate, z: tf.Tensor, labels: tf.Tensor, batch: int = 64) -> np.ndarray:
    n = min(len(z), len(labels))
    return np.concatenate([generate(z[i : min(i + batch, n)], labels[i : min(i + batch, n)]).numpy()
                           for i in range(0, n, batch)])


def _progress_line(epoch: int, epochs: int, m: dict, eta: str) -> str:
    quality = f" | swd {m['swd']:.2f}" if "swd" in m else ""
    if "quality_ratio" in m:
        quality += (f" | hold-out: swd {m['swd_holdout']:.1f} (floor {m['swd_floor']:.1f}), "
                    f"intensity {m['intensity_w1_holdout']:.3f} (floor {m['intensity_w1_floor']:.3f})")
    return (
        f"epoch {epoch}/{epochs} | {m['images_per_second']:.1f} img/s | {m['kimg']:.2f} kimg | "
        f"g {m['g_loss']:.3f} d {m['d_loss']:.3f} D(real) acc {m['d_real_acc']:.2f}{quality} | "
        f"{eta}"
    )

