"""LeCam regularisation (`lecam_weight`): the reference's term, its anchors, its place in D's loss
on 1 and 2 replicas, and its anchors carried through a checkpoint."""

import numpy as np
import pytest
import tensorflow as tf

from job import config as C
from job.errors import ConfigError
from job.training import lecam
from job.training.loop import fit
from tests.helpers import flat_weights, one_step, random_images, smoke, straight_and_resumed


def test_the_term_is_the_references_and_waits_for_its_anchors():
    real, fake = tf.constant([2.0, -1.0, 0.5]), tf.constant([[0.0], [1.5], [-2.0]])
    anchors = tf.constant([1.0, 0.25, 3.0])  # a_real, a_fake, updates
    # relu(D(x) - a_fake)^2 + relu(a_real - D(G(z)))^2, per example (google/lecam-gan).
    want = [1.75 ** 2 + 1.0 ** 2, 0.0 + 0.0, 0.25 ** 2 + 3.0 ** 2]
    np.testing.assert_allclose(lecam.regulariser(real, fake, anchors).numpy(), want, rtol=1e-6)
    unset = tf.constant([1.0, 0.25, 0.0])  # no update yet: no anchors to pull towards
    assert lecam.regulariser(real, fake, unset).numpy().tolist() == [0.0, 0.0, 0.0]


def test_anchors_take_the_first_batch_then_move_by_the_references_decay():
    first = lecam.updated(tf.zeros([3]), tf.constant(2.0), tf.constant(-1.0)).numpy()
    assert first.tolist() == [2.0, -1.0, 1.0]
    second = lecam.updated(tf.constant(first), tf.constant(4.0), tf.constant(1.0)).numpy()
    np.testing.assert_allclose(second, [0.99 * 2 + 0.01 * 4, 0.99 * -1 + 0.01 * 1, 2.0], rtol=1e-6)


@pytest.mark.parametrize("weight", ["-0.1", "nan", "inf"])
def test_a_negative_or_non_finite_weight_is_refused(weight):
    with pytest.raises(ConfigError, match="lecam_weight"):
        C.resolve("smoke", sets=[f"lecam_weight={weight}"])


def _two_steps(config, replicas):
    """Two steps on a fresh state: (state, metrics of step 2)."""
    from job.training.data import epoch_batches
    from job.training.step import build_state, make_train_step
    from job.training.strategy import strategy_for

    strategy = strategy_for(replicas)
    state = build_state(config, strategy)
    step = make_train_step(config, state, strategy)
    batches = iter(strategy.experimental_distribute_dataset(epoch_batches(random_images(), config, 0)))
    step(next(batches), tf.constant(0.9))
    return state, {k: float(v) for k, v in step(next(batches), tf.constant(0.9)).items()}


def test_the_weighted_term_is_added_to_ds_loss_alike_on_one_and_two_replicas():
    sets = ["global_batch_size=16", "xla=off", "norm=none"]
    plain = C.resolve("smoke", sets=sets)
    regularised = C.resolve("smoke", sets=sets + ["lecam_weight=2"])
    # The first step has no anchors yet: the same update as without LeCam.
    s0, m0 = one_step(regularised, 1)
    s1, _ = one_step(plain, 1)
    np.testing.assert_array_equal(flat_weights(s0.discriminator), flat_weights(s1.discriminator))
    assert m0["lecam"] == 0.0 and s0.lecam.numpy()[2] == 1.0
    # The second step: the same forward pass, D's loss larger by exactly the weighted term.
    _, without = _two_steps(plain, 1)
    state1, with1 = _two_steps(regularised, 1)
    state2, with2 = _two_steps(regularised, 2)
    assert with1["lecam"] > 0 and "lecam" not in without
    _, doubled = _two_steps(C.resolve("smoke", sets=sets + ["lecam_weight=4"]), 1)
    assert doubled["lecam"] == pytest.approx(2 * with1["lecam"], rel=1e-5)  # linear in the weight
    assert with1["d_loss"] == pytest.approx(without["d_loss"] + with1["lecam"], rel=1e-5)
    assert with1["g_loss"] == pytest.approx(without["g_loss"], rel=1e-6)
    assert with1 == pytest.approx(with2, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(state1.lecam.numpy(), state2.lecam.numpy(), rtol=1e-5)
    assert np.abs(flat_weights(state1.discriminator) - flat_weights(state2.discriminator)).max() < 1e-5


@pytest.mark.heavy
def test_a_resumed_lecam_run_ends_with_the_same_weights_and_refuses_turning_it_off(tmp_path, demo_data):
    readers = straight_and_resumed(demo_data, tmp_path, lecam_weight=0.3, deterministic="true")
    anchors = [r.get_tensor("lecam/.ATTRIBUTES/VARIABLE_VALUE") for r in readers]
    assert anchors[0][2] > 1 and np.isfinite(anchors[0]).all()
    np.testing.assert_array_equal(anchors[0], anchors[1])
    keys = [k for k in readers[0].get_variable_to_shape_map() if k.startswith("discriminator")]
    assert keys
    for key in keys:
        np.testing.assert_array_equal(readers[1].get_tensor(key), readers[0].get_tensor(key), err_msg=key)
    # The anchors are part of the checkpoint: a resume that drops LeCam is a changed identity.
    with pytest.raises(ConfigError, match="lecam_weight"):
        fit(smoke(demo_data, tmp_path / "b", epochs=4, deterministic="true"))
