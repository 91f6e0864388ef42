"""`covidct generate`: synthetic PNGs from a run's EMA generator, each tagged as synthetic.

Works on any run URI (a local folder, gs://, or what `covidct best` downloaded): it reads the run's
config.json, rebuilds the generator and loads only the EMA generator from the chosen checkpoint.
"""

from __future__ import annotations

import logging
import pathlib

import numpy as np
import tensorflow as tf

from job import samples
from job.checkpoint import CheckpointStore, restore
from job.errors import UserError
from job.models import build_generator
from job.outputs import local_run_dir, read_config

log = logging.getLogger("covidct")


def load_generator(run_uri: str, checkpoint: str = "latest"):
    """(EMA generator, config, epoch) of `run_uri` at `checkpoint` (latest, best or an epoch)."""
    config = read_config(run_uri)
    store = CheckpointStore(run_uri, str(local_run_dir(run_uri)), config.keep_checkpoints)
    saved = store.find(checkpoint)
    generator = build_generator(config, name="ema_generator")
    state = restore(tf.train.Checkpoint(ema_generator=generator), store.fetch(saved), partial=True)
    return generator, config, int(state["epoch"])


def generate_images(generator, config, n: int, seed: int = 0, batch: int = 64) -> np.ndarray:
    """`n` images in [-1, 1], (n, H, W, 1), from latents drawn with `seed`."""
    z = tf.random.stateless_normal([n, config.latent_dim], seed=[seed, 104729])
    return np.concatenate([generator(z[i : i + batch], training=False).numpy()
                           for i in range(0, n, batch)])


def generate_pngs(run_uri: str, out_dir: str, n: int, checkpoint: str = "latest", seed: int = 0) -> list[pathlib.Path]:
    """Write `n` PNGs into `out_dir`; every file carries synthetic/run/epoch PNG text tags."""
    if n <= 0:
        raise UserError(f"--n must be positive, got {n}")
    generator, config, epoch = load_generator(run_uri, checkpoint)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = generate_images(generator, config, n, seed)
    tags = {"run": run_uri, "epoch": str(epoch), "checkpoint": checkpoint, "seed": str(seed)}
    paths = []
    for i, image in enumerate(images):
        path = out / f"synthetic_{i:05d}.png"
        samples.save_png(samples.grid(image[None], cols=1), path, synthetic_tags={**tags, "index": str(i)})
        paths.append(path)
    log.info(f"wrote {n} synthetic images ({config.height}x{config.width}, epoch {epoch}) to {out}")
    return paths
