"""Standing statistics: the EMA generator draws in inference mode what it draws in training mode."""

import numpy as np
import pytest
import tensorflow as tf

from job import config as C
from job.metrics import intensity_w1
from job.training.strategy import strategy_for
from job.training.models import generator_inputs
from job.training.standing_stats import batch_norm_layers, standing_statistics
from job.training.step import build_state


def _drift(generator, scale: float = 3.0, seed: int = 0) -> None:
    """Move the trainable weights away from those the moving statistics were tracked for, as
    training (and the EMA, which copies the raw generator's statistics) does."""
    rng = np.random.default_rng(seed)
    for v in generator.trainable_variables:
        v.assign(v.numpy() * scale + rng.normal(0, 0.02, v.shape).astype(np.float32))


def _gap(generator, config) -> float:
    """Intensity W1 between what the generator draws in inference mode and in training mode (in
    batches of the run's size, as D saw it) for the same 256 latents, [-1, 1] units. Per image
    the two differ anyway: training mode normalises by each batch's own noisy statistics."""
    z = tf.random.stateless_normal([256, config.latent_dim], seed=[5, 6])
    y = tf.constant(np.arange(256) % 2, tf.int32)
    size = config.global_batch_size
    trained = np.concatenate([generator(generator_inputs(config, z[i : i + size], y[i : i + size]),
                                        training=True).numpy() for i in range(0, 256, size)])
    drawn = generator(generator_inputs(config, z, y), training=False).numpy()
    return intensity_w1(trained, drawn)


@pytest.mark.parametrize("sets", [[], ["conditional=true"], ["precision=mixed_float16"]])
def test_inference_mode_draws_what_training_mode_draws_once_the_statistics_stand(sets):
    config = C.resolve("smoke", sets=["global_batch_size=32", *sets])
    state = build_state(config, strategy_for(1))
    G = state.ema_generator
    _drift(G)
    before = _gap(G, config)
    assert before > 0.03  # stale statistics shift and stretch the grey levels (issue 19)
    assert standing_statistics(G, config, [0, 1]) == len(batch_norm_layers(G)) > 0
    stats = [l.moving_mean.numpy().copy() for l in batch_norm_layers(G)]
    after = _gap(G, config)
    assert after < before / 5 and after < 0.01
    # A pure function of the weights and the seed: measuring again sets the same numbers (though
    # the training-mode calls of `_gap` moved the statistics by Keras' momentum update).
    standing_statistics(G, config, [0, 1])
    for layer, s in zip(batch_norm_layers(G), stats):
        np.testing.assert_array_equal(layer.moving_mean.numpy(), s)


def test_standing_statistics_leave_the_weights_and_work_on_synchronised_batch_norm():
    config = C.resolve("smoke", sets=["global_batch_size=32", "xla=off"])
    one, two = build_state(config, strategy_for(1)), build_state(config, strategy_for(2))
    for state in (one, two):
        _drift(state.ema_generator)
    weights = [v.numpy().copy() for v in two.ema_generator.trainable_variables]
    standing_statistics(one.ema_generator, config)
    standing_statistics(two.ema_generator, config)  # mirrored variables, synchronised batch norm
    for v, w in zip(two.ema_generator.trainable_variables, weights):
        np.testing.assert_array_equal(v.numpy(), w)
    for a, b in zip(batch_norm_layers(one.ema_generator), batch_norm_layers(two.ema_generator)):
        np.testing.assert_allclose(a.moving_variance.numpy(), b.moving_variance.numpy(), rtol=1e-4)


def test_a_generator_without_batch_norm_is_left_alone():
    config = C.resolve("smoke", sets=["norm=none"])
    G = build_state(config, strategy_for(1)).ema_generator
    weights = [w.copy() for w in G.get_weights()]
    assert standing_statistics(G, config) == 0
    for a, b in zip(G.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
