"""Input pipeline: batches/s of the job's tf.data pipeline against decoding the originals with
Pillow every epoch (what a notebook does), each held against the step's consumption rate.

The job's figure is split in two: the first epoch reads and decodes the prepared TFRecords (and
fills the in-memory cache), later epochs come from that cache. The target (>= 10x the step's
rate) is held against the first, slower one.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from PIL import Image

from bench.sources import image_files
from job.config import TrainConfig
from job.training.data import load_images, run_batches

CACHED_EPOCHS = 5


def _drain(batches) -> int:
    count = 0
    for batch in batches:
        batch["image"].numpy()  # the batch is really there, not just scheduled
        count += 1
    return count


def job_pipeline(config: TrainConfig) -> dict[str, float]:
    """Batches/s of `run_batches` over the prepared dataset: first epoch, then cached epochs."""
    images, count = load_images(config)
    t0 = time.perf_counter()  # building the dataset reads the TFRecords: the first epoch's cost
    batches = iter(run_batches(images, config, 0, epochs=1 + CACHED_EPOCHS))
    first = _drain(itertools.islice(batches, count // config.global_batch_size))
    t1 = time.perf_counter()
    cached = _drain(batches)
    t2 = time.perf_counter()
    return {"images": count, "first_epoch": first / (t1 - t0), "cached": cached / (t2 - t1)}


def pillow_epoch(folder: str, config: TrainConfig) -> dict[str, float]:
    """Batches/s of opening, decoding, greyscaling and resizing every original file once."""
    files = image_files(folder)
    size = (config.width, config.height)
    t0 = time.perf_counter()
    batch = []
    for path in files:
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("L").resize(size, Image.Resampling.BILINEAR))
        batch.append(pixels.astype(np.float32) / 127.5 - 1.0)
        if len(batch) == config.global_batch_size:
            np.stack(batch)
            batch = []
    seconds = time.perf_counter() - t0
    return {"files": len(files), "batches": len(files) / config.global_batch_size / seconds}
