"""`covidct generate`: synthetic PNGs from a run's EMA generator, each tagged as synthetic.

Works on any run URI (a local folder, gs://, or what `covidct best` downloaded): it reads the run's
config.json, rebuilds the generator and loads only the EMA generator from the chosen checkpoint.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from job import images, run, storage
from job.checkpoint import CheckpointStore, restore
from job.config import TrainConfig, from_json
from job.errors import ConfigError, UsageError
from job.training.models import build_generator, generator_inputs
from job.training.standing_stats import standing_statistics
from tfds_covidct.covid_ct.sources import LABELS

log = logging.getLogger("covidct")


def read_config(run_uri: str) -> TrainConfig:
    """The `TrainConfig` a run recorded in its config.json; a UserError if it is not a run."""
    return from_json(run.read_config_text(run_uri))


def load_generator(run_uri: str, checkpoint: str = "latest"):
    """(EMA generator, config, epoch) of `run_uri` at `checkpoint` (latest, best or an epoch).

    The generator's batch-norm statistics are measured on its own output
    (`job.training.standing_stats`): a checkpoint made mid-epoch (wall clock, preemption) holds the
    raw generator's, which draw far too dark images. A checkpoint that fails its manifest or
    its restore is set aside for the next newest (`CheckpointStore.load`).

    Raises:
        UserError: not a run, no such checkpoint; BadRunFile (exit 2): config.json is not JSON;
        CheckpointCorrupt (exit 2): no checkpoint loads.
    """
    config = read_config(run_uri)
    store = CheckpointStore(storage.Mirror(run_uri), config.keep_checkpoints)
    generator = build_generator(config, name="ema_generator")
    _, state = store.load(checkpoint, lambda folder: restore(
        tf.train.Checkpoint(ema_generator=generator), folder, partial=True))
    standing_statistics(generator, config, [LABELS.index(n) for n in (config.label_names or LABELS)])
    return generator, config, int(state["epoch"])


def generate_images(generator, config, n: int, seed: int = 0, labels: np.ndarray | None = None,
                    batch: int = 64) -> np.ndarray:
    """`n` images in [-1, 1], (n, H, W, 1), from latents drawn with `seed`; a conditional G draws
    class `labels[i]` (int indices into LABELS) for image i."""
    z = tf.random.stateless_normal([n, config.latent_dim], seed=[seed, 104729])
    y = tf.constant(np.zeros(n, np.int32) if labels is None else np.asarray(labels, np.int32))
    return np.concatenate([generator(generator_inputs(config, z[i : i + batch], y[i : i + batch]),
                                     training=False).numpy() for i in range(0, n, batch)])


def label_plan(config: TrainConfig, label: str | None, n: int) -> np.ndarray | None:
    """Class indices for `generate --label`: "covid" (n of one class), "covid=600,non_covid=400"
    (counts per class; they replace n), or None for an unconditional run.

    Raises:
        ConfigError (exit 2): a label for an unconditional run, an unknown class, a bad count.
    """
    if not label:
        return None if not config.conditional else np.zeros(n, np.int32) + LABELS.index(
            (config.label_names or LABELS)[0])
    if not config.conditional:
        raise ConfigError("label", "this run's generator is unconditional: it cannot draw a chosen "
                          "class (train with --set conditional=true, or --set labels=covid for a "
                          "COVID-only generator)")
    parts = dict(p.partition("=")[::2] for p in label.split(","))
    out = []
    for name, count in parts.items():
        if name not in LABELS:
            raise ConfigError("label", f"{name!r} is not one of {list(LABELS)}")
        if config.label_names and name not in config.label_names:
            raise ConfigError("label", f"the run trained on {list(config.label_names)} only")
        k = n if not count and len(parts) == 1 else (int(count) if count.isdigit() else -1)
        if k <= 0:
            raise ConfigError("label", f"give a positive count for {name!r} (e.g. {name}=100)")
        out += [LABELS.index(name)] * k
    return np.asarray(out, np.int32)


def generate_pngs(run_uri: str, out_dir: str, n: int, checkpoint: str = "latest", seed: int = 0,
                  label: str | None = None) -> list[str]:
    """Write PNGs into `out_dir` (folder or gs://): `n`, or the counts of `label`; every file
    carries synthetic/run/epoch PNG tags, and its class for a conditional run. Returns the names."""
    if n <= 0:
        raise UsageError(f"--n must be positive, got {n}")
    generator, config, epoch = load_generator(run_uri, checkpoint)
    labels = label_plan(config, label, n)
    n = n if labels is None else len(labels)
    drawn = generate_images(generator, config, n, seed, labels)
    tags = {"run": run_uri, "epoch": str(epoch), "checkpoint": checkpoint, "seed": str(seed)}
    names = []
    with storage.staged_output(out_dir) as out:
        for i, image in enumerate(drawn):
            names.append(f"synthetic_{i:05d}.png")
            own = {"index": str(i)} if labels is None else {"index": str(i), "label": LABELS[labels[i]]}
            images.save_png(images.grid(image[None], cols=1), out / names[-1],
                            synthetic_tags={**tags, **own})
    log.info(f"wrote {n} synthetic images ({config.height}x{config.width}, epoch {epoch}) to {out_dir}")
    return names
