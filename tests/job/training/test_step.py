"""The distributed step: losses, augmentation, EMA, and 1 vs 2 replicas on the same global batch."""

import math

import numpy as np
import pytest
import tensorflow as tf

from job import config as C
from job.training.augment import AUG_PARAMS, augment
from job.training.data import epoch_batches, run_batches
from job.training.strategy import strategy_for
from tests.helpers import flat_weights, one_step, random_images
from job.training.step import build_state, make_train_step, per_example_losses, use_xla


def _one_step(config, replicas):
    state, metrics = one_step(config, replicas)
    return metrics, flat_weights(state.generator, state.discriminator), flat_weights(state.ema_generator)


def test_one_and_two_replicas_give_the_same_update_on_the_same_global_batch():
    # XLA off on both: "auto" would compile the 1-replica step, whose arithmetic differs at ~1e-6.
    config = C.resolve("smoke", sets=["global_batch_size=16", "r1_gamma=0.5", "norm=none", "xla=off"])
    m1, w1, _ = _one_step(config, 1)
    m2, w2, _ = _one_step(config, 2)
    # Losses are means over the global batch: a double division by replicas would halve them.
    for k in ("g_loss", "d_loss", "d_real_acc", "r1"):
        assert m1[k] == pytest.approx(m2[k], rel=1e-4, abs=1e-6), k
    assert np.abs(w1 - w2).max() < 1e-5


@pytest.mark.parametrize("replicas", [1, 2])
def test_xla_step_computes_the_same_losses_and_trains(replicas):
    # Synchronised batch norm cannot be compiled (its cross-replica sum is a merge_call), so under
    # XLA each replica normalises its own share: one replica computes the same losses.
    config = C.resolve("smoke", sets=["global_batch_size=16"])
    plain, w_plain, _ = _one_step(C.override(config, {"xla": "off"}), replicas)
    xla, w_xla, _ = _one_step(C.override(config, {"xla": "on"}), replicas)
    assert all(math.isfinite(v) for v in xla.values()) and np.isfinite(w_xla).all()
    if replicas == 1:
        for k in ("g_loss", "d_loss", "d_real_acc"):
            assert xla[k] == pytest.approx(plain[k], rel=1e-4, abs=1e-6), k
        assert np.abs(w_xla - w_plain).max() < 1e-3  # Adam's first step moves by ~lr (1e-4)
    else:
        assert xla["g_loss"] != pytest.approx(plain["g_loss"], rel=1e-6)  # per-replica BN


def test_auto_xla_compiles_unless_replicas_must_share_batch_norm():
    auto = C.resolve("smoke", sets=["xla=auto"])
    assert auto.xla == "auto" and C.TrainConfig().xla == "auto"
    assert use_xla(auto, 1) and not use_xla(auto, 2)
    assert use_xla(C.override(auto, {"norm": "none"}), 2)
    assert use_xla(C.override(auto, {"xla": "on"}), 2)
    assert not use_xla(C.override(auto, {"xla": "off"}), 1)


def test_first_losses_are_near_log2_for_bce_and_finite():
    m, _, _ = _one_step(C.resolve("smoke", sets=["augment="]), 2)
    assert 0.3 < m["g_loss"] < 2.0 and 0.6 < m["d_loss"] < 3.0
    assert all(math.isfinite(v) for v in m.values())


def test_ema_beta_zero_copies_the_generator():
    config = C.resolve("smoke")
    strategy = strategy_for(2)
    state = build_state(config, strategy)
    step = make_train_step(config, state, strategy)
    for batch in strategy.experimental_distribute_dataset(epoch_batches(random_images(), config, 0)):
        step(batch, tf.constant(0.0))
    for e, g in zip(state.ema_generator.weights, state.generator.weights):
        np.testing.assert_allclose(e.numpy(), g.numpy())


def test_ema_lags_the_generator_with_a_high_decay():
    config = C.resolve("smoke")
    strategy = strategy_for(1)
    state = build_state(config, strategy)
    before = [v.numpy().copy() for v in state.ema_generator.trainable_variables]
    step = make_train_step(config, state, strategy)
    batch = next(iter(strategy.experimental_distribute_dataset(epoch_batches(random_images(), config, 0))))
    step(batch, tf.constant(0.99))
    for b, e, g in zip(before, state.ema_generator.trainable_variables, state.generator.trainable_variables):
        np.testing.assert_allclose(e.numpy(), 0.99 * b + 0.01 * g.numpy(), rtol=1e-4, atol=1e-6)


def test_ema_half_life_ramps_up_then_holds():
    config = C.resolve("smoke", sets=["ema_kimg=10", "ema_rampup=0.05", "global_batch_size=16"])
    # Early: half-life = 5% of the 1000 images seen = 50 images -> beta = 0.5 ** (16 / 50).
    assert config.ema_beta(1000) == pytest.approx(0.5 ** (16 / 50))
    # Late: the 10 kimg half-life caps it.
    assert config.ema_beta(10_000_000) == pytest.approx(0.5 ** (16 / 10_000))
    assert C.override(config, {"ema_kimg": 0}).ema_beta(10_000) == 0.0


def test_losses_have_their_textbook_values():
    zero = tf.zeros([4, 1])
    g, d = per_example_losses("bce", zero, zero)
    np.testing.assert_allclose(g.numpy(), math.log(2), rtol=1e-6)
    np.testing.assert_allclose(d.numpy(), 2 * math.log(2), rtol=1e-6)
    g, d = per_example_losses("hinge", tf.constant([[2.0]]), tf.constant([[-0.5]]))
    assert float(g[0]) == 0.5 and float(d[0]) == 0.5  # relu(1-2) + relu(1-0.5)


def test_translation_shifts_by_the_drawn_offset_and_fills_black():
    image = np.full((1, 16, 16, 1), -1.0, np.float32)
    image[0, 8, 8, 0] = 1.0
    params = np.zeros((1, AUG_PARAMS), np.float32)
    params[0, 0], params[0, 1] = 1.0, 0.0  # dy = +2 (1/8 of 16), dx = -2
    out = augment(tf.constant(image), tf.constant(params), ("translation",)).numpy()
    assert out[0, 10, 6, 0] == 1.0 and out.sum() == -255.0 + 1.0


def test_cutout_blanks_half_the_image_around_the_centre():
    image = np.ones((1, 16, 16, 1), np.float32)
    params = np.full((1, AUG_PARAMS), 0.5, np.float32)
    out = augment(tf.constant(image), tf.constant(params), ("cutout",)).numpy()[0, ..., 0]
    assert (out == 0).sum() == 7 * 7 and out[8, 8] == 0 and out[0, 0] == 1


def test_augmentation_is_differentiable_and_empty_policy_is_identity():
    x = tf.random.normal([2, 16, 16, 1])
    p = tf.random.uniform([2, AUG_PARAMS])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = augment(x, p, ("color", "translation", "cutout"))
    assert tape.gradient(y, x) is not None
    np.testing.assert_array_equal(augment(x, p, ()).numpy(), x.numpy())


def test_epoch_batches_are_a_pure_function_of_seed_and_epoch():
    config = C.resolve("smoke")
    first = [b["z"].numpy() for b in epoch_batches(random_images(), config, 3)]
    again = [b["z"].numpy() for b in epoch_batches(random_images(), config, 3)]
    other = [b["z"].numpy() for b in epoch_batches(random_images(), config, 4)]
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.allclose(first[0], other[0])
    skipped = [b["z"].numpy() for b in epoch_batches(random_images(), config, 3, skip_batches=1)]
    np.testing.assert_array_equal(skipped[0], first[1])


def test_run_batches_are_the_epochs_batches_one_after_another():
    # The train loop reads one dataset for the whole run; a resumed run starts it mid-epoch.
    config = C.resolve("smoke", sets=["global_batch_size=8", "epochs=4"])
    per_epoch = {e: [b["z"].numpy() for b in epoch_batches(random_images(), config, e)] for e in (1, 2, 3)}
    run = [b["z"].numpy() for b in run_batches(random_images(), config, start_epoch=1, skip_batches=2)]
    expected = per_epoch[1][2:] + per_epoch[2] + per_epoch[3]
    assert len(run) == len(expected) == 4 * 3 - 2
    for got, want in zip(run, expected):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(per_epoch[2][0], per_epoch[3][0])


@pytest.mark.parametrize("replicas", [1, 2])
def test_mixed_precision_step_trains_float32_weights_with_a_scaled_loss(replicas):
    # The GPU configuration (bench's "XLA + mixed precision" row), run on the CPU: float16
    # layers, float32 weights and logits, a loss-scale optimizer, XLA as "auto" resolves it.
    config = C.resolve("smoke", sets=["global_batch_size=16", "precision=mixed_float16"])
    # build_state seeds the initialisers: a second build holds the weights before the step.
    start = [v.numpy() for v in build_state(config, strategy_for(replicas)).generator.trainable_variables]
    state, m = one_step(config, replicas)
    reference, _, _ = _one_step(C.override(config, {"precision": "float32"}), replicas)
    assert type(state.g_opt).__name__ == "LossScaleOptimizer"
    assert {v.dtype for v in state.generator.weights} == {"float32"}
    assert {l.compute_dtype for l in state.generator.layers[1:-1]} == {"float16"}
    assert all(math.isfinite(v) for v in m.values())
    moved = [not np.allclose(v.numpy(), s) for v, s in zip(state.generator.trainable_variables, start)]
    assert all(moved)  # the scaled gradients were finite and applied, not skipped
    for k in ("g_loss", "d_loss"):  # float16 activations: the same losses to ~1e-2
        assert m[k] == pytest.approx(reference[k], rel=2e-2), k


def test_color_shifts_brightness_by_at_most_half_as_diffaugment_does_in_minus_one_to_one():
    # DiffAugment's rand_brightness adds U(-0.5, 0.5) to images in [-1, 1] (StyleGAN2's range);
    # a shift of U(-1, 1) hid the grey level from D and left the generator too dark.
    image = np.full((3, 8, 8, 1), -0.2, np.float32)
    params = np.zeros((3, AUG_PARAMS), np.float32)
    params[:, 4] = [0.0, 0.5, 1.0]  # brightness draws: -0.5, 0, +0.5
    params[:, 5] = 0.5  # contrast x1
    out = augment(tf.constant(image), tf.constant(params), ("color",)).numpy()
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), [-0.7, -0.2, 0.3], atol=1e-6)
    image[:, :4] = 0.6  # contrast scales about each image's mean: x0.5 .. x1.5
    params[:, 4], params[:, 5] = 0.5, [0.0, 0.5, 1.0]
    out = augment(tf.constant(image), tf.constant(params), ("color",)).numpy()
    np.testing.assert_allclose(out[:, 0, 0, 0] - out[:, -1, 0, 0], [0.4, 0.8, 1.2], atol=1e-6)


def test_r1_through_a_batch_norm_discriminator_is_refused_with_the_fix_in_the_message():
    with pytest.raises(C.ConfigError, match=r"r1_gamma.*without batch norm.*norm=none, or r1_gamma=0"):
        C.resolve("smoke", sets=["r1_gamma=1"])
    assert C.resolve("smoke", sets=["r1_gamma=1", "norm=none"]).r1_gamma == 1.0
    assert C.resolve("smoke").norm == "batch"  # R1 off: batch norm as before


@pytest.mark.parametrize("fixed", [True])
def test_an_overflow_on_replica_1_only_lowers_the_loss_scale_and_leaves_the_weights(fixed):
    # Keras' LossScaleOptimizer judges finiteness from replica 0's gradients alone; the step makes
    # every replica see an overflow anywhere. No batch norm: replica 0 stays finite by itself.
    config = C.resolve("smoke", sets=["global_batch_size=16", "precision=mixed_float16",
                                      "norm=none", "xla=off", "augment="])
    strategy = strategy_for(2)
    state = build_state(config, strategy)
    step = make_train_step(config, state, strategy)
    batch = next(iter(epoch_batches(random_images(), config, 0)))

    def per_replica(ctx):
        i = ctx.replica_id_in_sync_group
        part = {k: v[i * 8 : (i + 1) * 8] for k, v in batch.items()}
        if i == 1:  # float16 overflows: inf activations, NaN gradients on this replica only
            part["z"] = part["z"] * 1e30
        return part

    dist = strategy.experimental_distribute_values_from_function(per_replica)
    variables = state.generator.trainable_variables + state.discriminator.trainable_variables
    before = [v.numpy().copy() for v in variables]
    scales = [float(o.dynamic_scale.numpy()) for o in (state.g_opt, state.d_opt)]
    step(dist, tf.constant(0.9))
    for b, v in zip(before, variables):
        np.testing.assert_array_equal(v.numpy(), b)
    assert [float(o.dynamic_scale.numpy()) for o in (state.g_opt, state.d_opt)] == [s / 2 for s in scales]


def test_initial_weights_do_not_depend_on_other_threads_drawing_from_random():
    # google-api-core's retry jitter draws from Python's global `random` in background uploads;
    # Keras seeds initializers from it unless given a seed. The same config must give the same
    # weights whatever other threads draw meanwhile (a conditional model has embeddings too).
    import random
    import threading

    config = C.resolve("smoke", sets=["conditional=true"])
    quiet = flat_weights(*_models(build_state(config, strategy_for(1))))
    stop = threading.Event()

    def draw():
        while not stop.is_set():
            random.random()

    thread = threading.Thread(target=draw, daemon=True)
    thread.start()
    try:
        busy = [flat_weights(*_models(build_state(config, strategy_for(1)))) for _ in range(3)]
    finally:
        stop.set()
        thread.join()
    for weights in busy:
        np.testing.assert_array_equal(weights, quiet)


def _models(state):
    return state.generator, state.discriminator, state.ema_generator
