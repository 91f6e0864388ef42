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
from job.errors import UserError
from job.training.models import build_generator

log = logging.getLogger("covidct")


def read_config(run_uri: str) -> TrainConfig:
    """The `TrainConfig` a run recorded in its config.json; a UserError if it is not a run."""
    return from_json(run.read_config_text(run_uri))


def load_generator(run_uri: str, checkpoint: str = "latest"):
    """(EMA generator, config, epoch) of `run_uri` at `checkpoint` (latest, best or an epoch)."""
    config = read_config(run_uri)
    store = CheckpointStore(storage.Mirror(run_uri), config.keep_checkpoints)
    saved = store.find(checkpoint)
    generator = build_generator(config, name="ema_generator")
    state = restore(tf.train.Checkpoint(ema_generator=generator), store.fetch(saved), partial=True)
    return generator, config, int(state["epoch"])


def generate_images(generator, config, n: int, seed: int = 0, batch: int = 64) -> np.ndarray:
    """`n` images in [-1, 1], (n, H, W, 1), from latents drawn with `seed`."""
    z = tf.random.stateless_normal([n, config.latent_dim], seed=[seed, 104729])
    return np.concatenate([generator(z[i : i + batch], training=False).numpy()
                           for i in range(0, n, batch)])


def generate_pngs(run_uri: str, out_dir: str, n: int, checkpoint: str = "latest", seed: int = 0) -> list[str]:
    """Write `n` PNGs into `out_dir` (folder or gs://); every file carries synthetic/run/epoch
    PNG text tags. Returns the file names."""
    if n <= 0:
        raise UserError(f"--n must be positive, got {n}")
    generator, config, epoch = load_generator(run_uri, checkpoint)
    drawn = generate_images(generator, config, n, seed)
    tags = {"run": run_uri, "epoch": str(epoch), "checkpoint": checkpoint, "seed": str(seed)}
    names = []
    with storage.staged_output(out_dir) as out:
        for i, image in enumerate(drawn):
            names.append(f"synthetic_{i:05d}.png")
            images.save_png(images.grid(image[None], cols=1), out / names[-1],
                            synthetic_tags={**tags, "index": str(i)})
    log.info(f"wrote {n} synthetic images ({config.height}x{config.width}, epoch {epoch}) to {out_dir}")
    return names
