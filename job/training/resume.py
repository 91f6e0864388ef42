"""Resume-first start-up: where a run continues from, under the run's lease.

The newest usable checkpoint at the run URI (or the folder Ray Tune hands a trial) is loaded into
the training state before anything trains; incomplete checkpoint folders of a killed writer are
pruned first. Only the lease's holder gets here (`job.training.loop.fit`), so the folders pruned
can never be a live writer's.
"""

from __future__ import annotations

import logging

from job import storage
from job.checkpoint import CheckpointStore, restore
from job.config import TrainConfig
from job.errors import ConfigError

log = logging.getLogger("covidct")


def resume(config: TrainConfig, store: CheckpointStore, state, source: str | None) -> None:
    """Load `source` (or the run URI's newest usable checkpoint: `CheckpointStore.load` sets
    damaged ones aside) into `state`.

    Raises:
        ConfigError (exit 2): the checkpoint was saved mid-epoch with another global_batch_size
            (its step counts batches of that size: the rest of the epoch would be misplaced).
        CheckpointCorrupt (exit 2): no complete checkpoint loads.
    """
    pruned = store.prune_incomplete()
    if pruned:
        log.info(f"pruned {len(pruned)} incomplete checkpoint(s) of a killed writer: {', '.join(pruned)}")
    ckpt = state.checkpoint()
    if source is not None:
        restored = restore(ckpt, source)
    elif store.latest() is not None:
        saved, restored = store.load("latest", lambda folder: restore(ckpt, folder))
        source = storage.join(store.uri, saved.name)
    else:
        return
    batch = restored.get("global_batch_size", config.global_batch_size)  # absent: older versions
    if restored["step"] and batch != config.global_batch_size:
        raise ConfigError("global_batch_size", (
            f"{source} was saved {restored['step']} steps into epoch {restored['epoch'] + 1} with "
            f"batches of {batch}; resuming that epoch with {config.global_batch_size} would "
            f"train on the wrong images: resume with --set global_batch_size={batch} and change "
            "it once the run has a checkpoint at an epoch's end"))
    log.info(f"resumed from {source}: epoch {restored['epoch']}, step {restored['step']}")
    # Keras 3 checkpoints the learning rate; the config's value wins (a resumed run with
    # --set g_lr=..., a PBT trial that was handed a new rate).
    state.g_opt.learning_rate.assign(config.g_lr)
    state.d_opt.learning_rate.assign(config.d_lr)
