"""The GAN state and its distributed train step.

One step is the DCGAN tutorial's: one forward pass, two `GradientTape`s, G and D updated together.
Around it, what makes it a multi-GPU job: per-example losses reduced by the global batch
(`tf.nn.compute_average_loss`), synchronised batch norm, loss scaling in mixed precision, an
optional XLA-compiled forward/backward, DiffAugment, R1, LeCam, and an EMA copy of the generator. In mixed
precision an overflow on any replica skips the update on all of them (`finite_on_all_replicas`).
"""

from __future__ import annotations

import dataclasses
import random

import keras
import tensorflow as tf

from job.training import lecam
from job.training.augment import augment
from job.config import TrainConfig
from job.training.models import (
    build_discriminator, build_generator, discriminator_inputs, generator_inputs,
)


def per_example_losses(loss: str, real_logits: tf.Tensor, fake_logits: tf.Tensor):
    """(generator, discriminator) losses per example, shape (B,).

    'bce' is the tutorial's non-saturating cross-entropy, written with softplus (the stable form
    of -log sigmoid); 'hinge' is the SAGAN/BigGAN hinge loss.
    """
    real = tf.reshape(tf.cast(real_logits, tf.float32), [-1])
    fake = tf.reshape(tf.cast(fake_logits, tf.float32), [-1])
    if loss == "hinge":
        return -fake, tf.nn.relu(1.0 - real) + tf.nn.relu(1.0 + fake)
    return tf.nn.softplus(-fake), tf.nn.softplus(-real) + tf.nn.softplus(fake)


@dataclasses.dataclass
class GanState:
    """Everything a checkpoint holds; built inside the strategy's scope."""

    generator: keras.Model
    discriminator: keras.Model
    ema_generator: keras.Model
    g_opt: keras.optimizers.Optimizer
    d_opt: keras.optimizers.Optimizer
    epoch: tf.Variable  # completed epochs
    step: tf.Variable  # completed steps of the current epoch (non-zero only after a SIGTERM)
    # LeCam's anchors (`job.training.lecam`), only when `lecam_weight` > 0: that is why the weight
    # is part of a run's identity (a checkpoint with and one without have different contents).
    lecam: tf.Variable | None = None

    def variables(self) -> list[tf.Variable]:
        """Every variable the checkpoint holds, as TensorFlow variables (Keras 3 wraps its own)."""
        keras_vars = [v for m in (self.generator, self.discriminator, self.ema_generator) for v in m.weights]
        keras_vars += list(self.g_opt.variables) + list(self.d_opt.variables)
        own = [self.epoch, self.step] + ([] if self.lecam is None else [self.lecam])
        return [v if isinstance(v, tf.Variable) else v.value for v in keras_vars] + own

    def checkpoint(self) -> tf.train.Checkpoint:
        extra = {} if self.lecam is None else {"lecam": self.lecam}
        return tf.train.Checkpoint(
            generator=self.generator, discriminator=self.discriminator,
            ema_generator=self.ema_generator, g_opt=self.g_opt, d_opt=self.d_opt,
            epoch=self.epoch, step=self.step, **extra,
        )


def _optimizer(config: TrainConfig, lr: float) -> keras.optimizers.Optimizer:
    opt = keras.optimizers.Adam(lr, beta_1=config.adam_beta_1, beta_2=config.adam_beta_2)
    if config.precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def use_xla(config: TrainConfig, num_replicas: int) -> bool:
    """Whether the forward/backward is jit-compiled: `config.xla`, with "auto" resolved.

    XLA runs the step 1.2-1.9x faster on the bench CPU, but cannot compile batch norm synchronised
    across replicas (its cross-replica sum is a merge_call), so a compiled step normalises each
    replica's share of the batch alone. Synchronised, 1 and N replicas run the same arithmetic on
    the same global batch (a test holds them to 1e-5). "auto" therefore compiles when that costs
    nothing: one replica (where the two are the same arithmetic) or no batch norm.
    """
    if config.xla == "auto":
        return num_replicas == 1 or config.norm != "batch"
    return config.xla == "on"


def build_state(config: TrainConfig, strategy: tf.distribute.Strategy) -> GanState:
    """Models and optimizers for `config`, with optimizer slots built up front.

    Keras 3 optimizers create their slots lazily inside a cond; under MirroredStrategy the first
    distributed step then fails ("You must feed a value for placeholder tensor"), so build them here.
    Batch norm is synchronised unless the step compiles with XLA (`use_xla`).
    """
    sync = not use_xla(config, strategy.num_replicas_in_sync)
    weight_seeds = random.Random(config.seed)  # one stream for G, D and the EMA, in this order
    with strategy.scope():
        keras.utils.set_random_seed(config.seed)
        generator = build_generator(config, sync_batch_norm=sync, weight_seeds=weight_seeds)
        discriminator = build_discriminator(config, sync_batch_norm=sync, weight_seeds=weight_seeds)
        ema = build_generator(config, name="ema_generator", sync_batch_norm=sync, weight_seeds=weight_seeds)
        ema.set_weights(generator.get_weights())
        g_opt, d_opt = _optimizer(config, config.g_lr), _optimizer(config, config.d_lr)
        g_opt.build(generator.trainable_variables)
        d_opt.build(discriminator.trainable_variables)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        anchors = (tf.Variable(tf.zeros([3]), trainable=False, name="lecam")
                   if config.lecam_weight > 0 else None)
    return GanState(generator, discriminator, ema, g_opt, d_opt, epoch, step, anchors)


def finite_on_all_replicas(grads: list) -> list:
    """The replica's gradients, or all NaN if any replica's are not finite (replica context).

    Keras 3.15's `LossScaleOptimizer` decides skip-or-apply from the gradients it is given, and
    under MirroredStrategy it is given per-replica gradients and acts on replica 0's verdict: an
    overflow on replica 1 alone was summed into the update and the loss scale kept. One all-reduce
    of a "non-finite" count makes every replica see the overflow, so each one skips the update
    and halves the scale, as on one device.
    """
    present = [g for g in grads if g is not None]
    if not present:
        return grads
    bad = tf.cast(tf.logical_not(tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in present])),
                  tf.float32)
    any_bad = tf.distribute.get_replica_context().all_reduce("SUM", bad) > 0
    return [None if g is None else tf.where(any_bad, tf.fill(tf.shape(g), tf.constant(float("nan"), g.dtype)), g)
            for g in grads]


def make_train_step(config: TrainConfig, state: GanState, strategy: tf.distribute.Strategy):
    """A `tf.function` taking one distributed global batch and the EMA's decay for this step
    (`TrainConfig.ema_beta`, a float32 scalar tensor so it never retraces), returning metrics.

    Returned metrics are sums over the global batch divided by the global batch size, i.e. batch
    means: g_loss, d_loss, d_real_acc (share of real images D calls real), r1, and with
    `lecam_weight` > 0 the weighted LeCam term `lecam`.
    """
    G, D = state.generator, state.discriminator
    gb = config.global_batch_size
    policy = config.augment_policy
    mixed = config.precision == "mixed_float16"

    def losses_and_grads(batch):
        real, z = batch["image"], batch["z"]
        # A conditional G draws the classes of the real batch, so D sees both classes alike.
        labels = batch["label"]
        real_seeds = batch["dropout_real"]  # dropout masks come from the pipeline, like aug params
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = G(generator_inputs(config, z, labels), training=True)
            real_in = augment(real, batch["aug_real"], policy)
            fake_in = augment(fake, batch["aug_fake"], policy)
            if config.r1_gamma > 0:
                with tf.GradientTape() as r1_tape:
                    r1_tape.watch(real_in)
                    real_logits = D(discriminator_inputs(config, real_in, labels, real_seeds), training=True)
                r1_grad = r1_tape.gradient(real_logits, real_in)  # sums over the batch
                r1 = 0.5 * config.r1_gamma * tf.reduce_sum(tf.square(r1_grad), axis=[1, 2, 3])
            else:
                real_logits = D(discriminator_inputs(config, real_in, labels, real_seeds), training=True)
                r1 = tf.zeros([tf.shape(real)[0]])
            fake_logits = D(discriminator_inputs(config, fake_in, labels, batch["dropout_fake"]),
                            training=True)
            g_per, d_per = per_example_losses(config.loss, real_logits, fake_logits)
            if state.lecam is not None:  # without it the step has no extra op at all
                reg = config.lecam_weight * lecam.regulariser(real_logits, fake_logits, state.lecam)
                d_per = d_per + reg
            g_loss = tf.nn.compute_average_loss(g_per, global_batch_size=gb)
            d_loss = tf.nn.compute_average_loss(d_per + r1, global_batch_size=gb)
            g_obj = state.g_opt.scale_loss(g_loss) if mixed else g_loss
            d_obj = state.d_opt.scale_loss(d_loss) if mixed else d_loss
        g_grads = g_tape.gradient(g_obj, G.trainable_variables)
        d_grads = d_tape.gradient(d_obj, D.trainable_variables)
        real_acc = tf.cast(tf.reshape(real_logits, [-1]) > 0, tf.float32)
        metrics = {
            "g_loss": g_loss,
            "d_loss": d_loss,
            "d_real_acc": tf.nn.compute_average_loss(real_acc, global_batch_size=gb),
            "r1": tf.nn.compute_average_loss(r1, global_batch_size=gb),
        }
        if state.lecam is not None:
            metrics["lecam"] = tf.nn.compute_average_loss(reg, global_batch_size=gb)
            for name, logits in (("d_real_logit", real_logits), ("d_fake_logit", fake_logits)):
                metrics[name] = tf.nn.compute_average_loss(
                    tf.reshape(tf.cast(logits, tf.float32), [-1]), global_batch_size=gb)
        return metrics, g_grads, d_grads

    if use_xla(config, strategy.num_replicas_in_sync):
        # Compiling the whole distributed step fails across replica devices (STACK.md); the
        # per-replica forward/backward compiles and the updates stay outside.
        losses_and_grads = tf.function(losses_and_grads, jit_compile=True)

    def replica_step(batch):
        metrics, g_grads, d_grads = losses_and_grads(batch)
        if mixed:
            g_grads, d_grads = finite_on_all_replicas(g_grads), finite_on_all_replicas(d_grads)
        state.g_opt.apply_gradients(zip(g_grads, G.trainable_variables))
        state.d_opt.apply_gradients(zip(d_grads, D.trainable_variables))
        return metrics

    ema_pairs = list(zip(state.ema_generator.trainable_variables, G.trainable_variables))
    copy_pairs = list(zip(state.ema_generator.non_trainable_variables, G.non_trainable_variables))

    @tf.function
    def train_step(dist_batch, ema_beta):
        per_replica = strategy.run(replica_step, args=(dist_batch,))
        metrics = {k: strategy.reduce("SUM", v, axis=None) for k, v in per_replica.items()}
        # Cross-replica context: one assignment updates every replica's copy alike.
        for e, w in ema_pairs:
            e.assign(ema_beta * e + (1.0 - ema_beta) * w)
        for e, w in copy_pairs:
            e.assign(w)
        if state.lecam is not None:  # the global batch's mean logits, the same on every replica
            state.lecam.assign(lecam.updated(state.lecam, metrics.pop("d_real_logit"),
                                             metrics.pop("d_fake_logit")))
        return metrics

    return train_step


@dataclasses.dataclass
class Stepper:
    """The train step as the loop runs it: each call passes the EMA's decay for the images seen
    so far (`TrainConfig.ema_beta`, the StyleGAN2-ADA ramp-up) and counts the batch's images.

    `images_seen` starts where a resumed run left off. The bench times this same object.
    """

    config: TrainConfig
    train_step: object  # what `make_train_step` returns
    images_seen: int = 0

    def __call__(self, dist_batch) -> dict:
        beta = tf.constant(self.config.ema_beta(self.images_seen), tf.float32)
        out = self.train_step(dist_batch, beta)
        self.images_seen += self.config.global_batch_size
        return out


def make_generate(state: GanState, use_ema: bool = True):
    """A `tf.function` (z (N, latent_dim), labels (N,) int32 or None) -> images (N, H, W, 1), with
    the EMA (or raw) generator in inference mode; labels are the classes a conditional G draws."""
    model = state.ema_generator if use_ema else state.generator
    conditional = len(model.inputs) == 2

    @tf.function(reduce_retracing=True)
    def generate(z, labels=None):
        if conditional:
            if labels is None:
                labels = tf.zeros(tf.shape(z)[:1], tf.int32)
            return model([z, labels], training=False)
        return model(z, training=False)

    return generate
