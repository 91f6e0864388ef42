"""The long run's size, 336x504, on the CPU: the step's replica equality at the preset's widths,
and the preset's geometry built from the real sample, trained, sampled at full resolution and
resumed.

All heavy (a 336x504 step at the preset's widths takes seconds on 2 cores).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from job import config as C
from job import run as run_layout
from tests.helpers import flat_weights, one_step
from job.images import read_tags
from job.training.loop import fit

pytestmark = pytest.mark.heavy

SAMPLE_ENV = "COVIDCT_SAMPLE_DIR"


def _images(n=8, seed=0):
    rng = np.random.RandomState(seed)
    return tf.data.Dataset.from_tensor_slices(rng.randint(0, 256, (n, 336, 504, 1)).astype("uint8"))


def _one_step(config, replicas):
    state, metrics = one_step(config, replicas, _images())
    return metrics, flat_weights(state.generator, state.discriminator)


def test_one_and_two_replicas_give_the_same_update_at_336x504():
    # Without batch norm the distributed step is exact at this size too: the crop, D's own
    # stages, losses divided by the global batch (narrow widths keep it quick).
    narrow = C.resolve("seed336x504", sets=["global_batch_size=4", "xla=off", "norm=none",
                                            "g_filters=4", "d_filters=4", "max_filters=16"])
    m1, w1 = _one_step(narrow, 1)
    m2, w2 = _one_step(narrow, 2)
    assert m1 == pytest.approx(m2, rel=1e-6, abs=1e-7)
    assert np.abs(w1 - w2).max() < 1e-6


def test_one_and_two_replicas_agree_at_336x504_with_synchronised_batch_norm():
    # The preset's models (G 7.5M, D 4.0M), 2 images per replica. Keras' synchronised batch norm
    # computes the variance as E[x^2] - E[x]^2 from per-replica sums; a channel's sum here runs
    # over ~10^5 values, so the two summation orders differ in the last bits and the one-pass
    # variance amplifies that (gradients agree to ~1e-2 relative, not ~1e-6 as at 28x28). Adam's
    # first update is lr * g / (|g| + eps), so a gradient that changes sign moves its weight by
    # up to 2 lr: observed for 0.2% of the weights. Every other weight agrees to 1e-5.
    config = C.resolve("seed336x504", sets=["global_batch_size=4", "xla=off"])
    m1, w1 = _one_step(config, 1)
    m2, w2 = _one_step(config, 2)
    for k in ("g_loss", "d_loss", "d_real_acc"):
        assert m1[k] == pytest.approx(m2[k], rel=1e-4, abs=1e-6), k
    diff = np.abs(w1 - w2)
    assert (diff > 1e-5).mean() < 0.005, (diff > 1e-5).sum()
    assert diff.max() <= 2 * config.g_lr * 1.001, diff.max()


@pytest.fixture(scope="module")
def tfds_336x504(tmp_path_factory):
    """covid_ct/336x504 built by `covidct prepare` from the real sample (COVIDCT_SAMPLE_DIR), or
    from the demo phantoms where the sample is absent: (data_dir, the images are phantoms)."""
    data = tmp_path_factory.mktemp("tfds336")
    sample = os.environ.get(SAMPLE_ENV)
    source = ["--manual-dir", sample] if sample else ["--demo"]
    prep = subprocess.run([sys.executable, "-m", "job", "prepare", *source, "--config", "336x504",
                           "--data-dir", str(data)], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, timeout=900)
    assert prep.returncode == 0, prep.stderr[-2000:]
    return str(data), not sample


def test_a_336x504_run_writes_a_full_resolution_grid_and_resumes_where_it_stopped(tfds_336x504, tmp_path):
    """The preset's geometry (the crop, D's own stages) through the real loop, checkpoints and
    sample grids, on the real sample. Narrow widths: the preset's own widths cost minutes per
    epoch on a CPU and are held elsewhere (their step by the replica tests above, their sizes by
    tests/job/training/test_capacity.py's plan line)."""
    data_dir, phantoms = tfds_336x504
    run = tmp_path / "run"
    sets = dict(data_dir=data_dir, run_uri=str(run), allow_synthetic_data=phantoms,
                g_filters=4, d_filters=4, max_filters=16, metric_num_images=16,
                checkpoint_every_epochs=1, sample_every_epochs=1, metrics_every_epochs=1)
    fit(C.resolve("seed336x504", extra=dict(sets, epochs=1)))
    seen = []
    fit(C.resolve("seed336x504", extra=dict(sets, epochs=2)), callbacks=[seen.append])
    assert [r.epoch for r in seen] == [2]  # epoch 1 was not trained again
    history = [json.loads(l) for l in (run / run_layout.METRICS).read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and history[0]["kimg"] > 0
    assert all(np.isfinite(h["g_loss"]) and np.isfinite(h["swd"]) for h in history)
    grid_path = run / run_layout.sample_grid(2)
    with Image.open(grid_path) as grid:
        assert grid.size == (4 * 504 + 3 * 2, 4 * 336 + 3 * 2)  # 16 samples at 336x504
        pixels = np.asarray(grid)
    assert pixels.std() > 0  # not a blank canvas
    assert read_tags(grid_path)["synthetic"] == "true"
    assert run_layout.read_listing(str(run)).latest.epoch == 2
