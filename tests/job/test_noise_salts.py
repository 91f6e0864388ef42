"""The run's fixed latents are drawn apart: the sample grid's, the metrics' and the standing
statistics' never repeat each other (they once shared a seed, so the grid was drawn from the
very latents the batch-norm statistics were measured on)."""

import numpy as np

from job import config as C
from job.training import data
from job.training.standing_stats import STANDING_BATCHES, latents


def test_standing_statistics_latents_differ_from_the_grid_and_metric_latents():
    config = C.resolve("smoke")
    standing = latents(config, STANDING_BATCHES * config.global_batch_size).numpy()
    for salt, n in ((0, 36), (1, config.metric_num_images)):
        fixed = data.fixed_noise(config, n, salt=salt).numpy()
        # no latent vector of one set appears in the other
        distances = np.abs(standing[:, None, :] - fixed[None, :, :]).max(-1)
        assert distances.min() > 1e-3, salt
