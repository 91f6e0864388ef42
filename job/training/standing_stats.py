"""Standing statistics: the generator's batch-norm statistics measured on its own current output.

A generator with batch norm trains in training mode (each batch normalised by its own statistics)
but draws in inference mode, normalised by the moving averages. Those averages describe neither
generator the job draws from: they trail the raw generator's weights (momentum 0.99, while the
weights change fast early in a run), and the EMA generator only copies them from the raw one,
though its weights - hence its activations - are different. Measured on `--preset seed28` (real
COVID lung crops, 28x28, 8 kimg): drawn in inference mode the EMA generator's pixels are far too
dark (mean -0.71 against -0.18 real, intensity W1 8.8x its real floor) while the same weights in
training mode sit at 1.6x; the darkness of issue 19 was this, not the augmentation.

The fix is BigGAN's "standing statistics" (Brock et al. 2019, sec. 3.1 and BigGAN-PyTorch's
`utils.accumulate_standing_stats`): before drawing, run the generator in training mode on a few
batches of fresh latents and set every batch-norm layer's statistics to the average of those
batches' means and variances, so inference mode reproduces what training mode (what D judged)
draws at the training batch size. Deterministic: the latents and classes are a pure function of
the seed, so a resumed run measures exactly what the straight one did.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from job.config import TrainConfig
from job.training.models import generator_inputs

# BigGAN's number of batches. Measured on the demo runs: 8 batches of 16 drew images within
# 0.019-0.026 mean absolute pixel difference ([-1, 1] units) of those drawn with statistics from 64
# batches, 32 batches within 0.010-0.017; the training-mode output of one batch varies as much.
STANDING_BATCHES = 16
# Below 7919, where `data.fixed_noise`'s salts start (7919 + salt: the grid 0, the metrics 1), so
# these latents never repeat the grid's or the metrics' (7919 itself drew the grid's latents).
_SALT = 7907


def latents(config: TrainConfig, n: int, seed: int | None = None) -> tf.Tensor:
    """The (n, latent_dim) float32 latents the statistics are measured on (seed: `config.seed`)."""
    return tf.random.stateless_normal([n, config.latent_dim],
                                      seed=[config.seed if seed is None else seed, _SALT])


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The model's batch-norm layers in graph order (empty for other norms)."""
    return [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]


def standing_statistics(
    generator: keras.Model,
    config: TrainConfig,
    class_ids: Sequence[int] = (0,),
    *,
    batches: int = STANDING_BATCHES,
    seed: int | None = None,
) -> int:
    """Set `generator`'s batch-norm moving mean and variance to its own training-mode statistics.

    Args:
        generator: `job.training.models.build_generator`'s model (functional), any precision.
        config: the run's config: latent size, conditioning, and `global_batch_size`, the batch
            whose statistics training mode uses.
        class_ids: the classes a conditional generator draws, in turn (ints into LABELS).
        batches: how many batches of `global_batch_size` fresh latents to average over.
        seed: the latents' seed (default `config.seed`).

    Returns:
        The number of batch-norm layers set (0: nothing to do, e.g. `norm: layer`).

    The variables are assigned in place (float32, shape (channels,)); the trainable weights and
    the models' other state are unchanged.
    """
    layers = batch_norm_layers(generator)
    if not layers:
        return 0
    probe = keras.Model(generator.inputs, [l.input for l in layers])
    size = config.global_batch_size
    z = latents(config, batches * size, seed)
    labels = tf.constant(np.resize(np.asarray(class_ids, np.int32), batches * size))
    means = [[] for _ in layers]
    variances = [[] for _ in layers]
    for b in range(batches):
        part = slice(b * size, (b + 1) * size)
        inputs = probe(generator_inputs(config, z[part], labels[part]), training=True)
        for i, (layer, x) in enumerate(zip(layers, inputs)):
            axes = [a for a in range(len(x.shape)) if a != layer.axis % len(x.shape)]
            mean, variance = tf.nn.moments(tf.cast(x, tf.float32), axes)
            means[i].append(mean)
            variances[i].append(variance)
    for layer, m, v in zip(layers, means, variances):
        layer.moving_mean.assign(tf.reduce_mean(tf.stack(m), 0))
        layer.moving_variance.assign(tf.reduce_mean(tf.stack(v), 0))
    return len(layers)
