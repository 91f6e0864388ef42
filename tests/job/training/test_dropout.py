"""Dropout without hidden randomness: D's masks come from the input pipeline's per-example seeds,
so 1 and 2 replicas compute the same update and a resumed run ends with the same weights
(Keras' Dropout draws from a SeedGenerator that no checkpoint holds, the same on every replica)."""

import numpy as np
import pytest
import tensorflow as tf

from job import config as C
from job.generate import read_config
from job.training.models.layers import SeededDropout
from tests.helpers import flat_weights, one_step, straight_and_resumed


def _weights_after_one_step(config, replicas):
    state, _ = one_step(config, replicas)
    return flat_weights(state.generator, state.discriminator)


def test_one_and_two_replicas_give_the_same_update_with_dropout():
    config = C.resolve("smoke", sets=["global_batch_size=16", "xla=off", "dropout=0.3"])
    one, two = _weights_after_one_step(config, 1), _weights_after_one_step(config, 2)
    assert np.abs(one - two).max() < 5e-5  # summation order only; another mask moves weights ~1e-2
    # And dropout does act: the update differs from one without it.
    plain = _weights_after_one_step(C.resolve("smoke", sets=["global_batch_size=16", "xla=off"]), 1)
    assert one.shape == plain.shape and np.abs(one - plain).max() > 1e-4


def test_masks_are_a_function_of_each_examples_seed():
    layer = SeededDropout(0.5, index=3)
    x = tf.ones((4, 8, 8, 2))
    seeds = tf.constant([[1, 2], [1, 2], [5, 6], [1, 2]], tf.int64)
    out = layer([x, seeds], training=True).numpy()
    np.testing.assert_array_equal(out[0], out[1])  # same seed, same mask
    assert not np.array_equal(out[0], out[2])  # another example, another mask
    assert set(np.unique(out)) <= {0.0, 2.0} and 0.3 < (out == 0).mean() < 0.7
    again = SeededDropout(0.5, index=3)([x[:1], seeds[3:]], training=True).numpy()
    np.testing.assert_array_equal(again[0], out[0])  # alone in its batch: the same mask
    np.testing.assert_array_equal(layer([x, seeds], training=False).numpy(), x.numpy())


@pytest.mark.heavy
def test_a_resumed_run_with_dropout_ends_with_the_same_weights(tmp_path, demo_data):
    readers = straight_and_resumed(demo_data, tmp_path, dropout=0.1, deterministic="true")
    assert read_config(str(tmp_path / "b")).dropout == 0.1
    weights = [{k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                if k.startswith("discriminator") and "save_counter" not in k} for reader in readers]
    assert weights[0].keys() == weights[1].keys() and weights[0]
    for key, value in weights[0].items():
        np.testing.assert_array_equal(weights[1][key], value, err_msg=key)
