"""The reference: a GAN step written the way the TensorFlow DCGAN tutorial writes it.

This is what a user who starts from the tutorial (tensorflow.org/tutorials/generative/dcgan) or a
notebook built on it would run, so every benchmark holds the job against it:

- the same generator and discriminator as the job for the compared config (layer for layer, the
  same weights count), with plain `BatchNormalization` as in the tutorial (no replica sync, as the job on one replica);
- `tf.function`, two `GradientTape`s, the latent drawn inside the step with `tf.random.normal`;
- mean-reduced `keras.losses.BinaryCrossentropy(from_logits=True)`; D loss = real + fake;
- Adam with the config's learning rates and betas (the tutorial's 1e-4 is the job's default too;
  using the job's betas keeps the comparison about machinery and features, not tuning);
- no strategy, no XLA, no mixed precision; input from
  `tf.data.Dataset.from_tensor_slices(images).shuffle(BUFFER).batch(BATCH)` with no prefetch.

It is not handicapped: the models are the job's own builders, the step is the tutorial's verbatim
apart from names, and nothing runs that the tutorial does not run.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from job.config import TrainConfig
from job.training.models import build_discriminator, build_generator

BUFFER_SIZE = 60000  # the tutorial's shuffle buffer (all of MNIST): a full shuffle


def tutorial_models(config: TrainConfig) -> tuple[keras.Model, keras.Model]:
    """The job's generator and discriminator for `config` (plain batch norm), in float32."""
    if config.precision != "float32":
        raise ValueError("the tutorial-style reference runs in float32 only")
    return build_generator(config), build_discriminator(config)


def tutorial_dataset(images_uint8: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """The tutorial's input: normalise in numpy, then from_tensor_slices.shuffle.batch."""
    images = (images_uint8.astype("float32") - 127.5) / 127.5
    return tf.data.Dataset.from_tensor_slices(images).shuffle(BUFFER_SIZE).batch(batch_size)


class TutorialGan:
    """Models, optimizers and the tutorial's `train_step` for one config."""

    def __init__(self, config: TrainConfig):
        keras.utils.set_random_seed(config.seed)
        self.config = config
        self.generator, self.discriminator = tutorial_models(config)
        self.generator_optimizer = keras.optimizers.Adam(
            config.g_lr, beta_1=config.adam_beta_1, beta_2=config.adam_beta_2)
        self.discriminator_optimizer = keras.optimizers.Adam(
            config.d_lr, beta_1=config.adam_beta_1, beta_2=config.adam_beta_2)
        self.cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)
        self.train_step = tf.function(self._train_step)
        self.generate = tf.function(lambda z: self.generator(z, training=False))

    def discriminator_loss(self, real_output, fake_output):
        real_loss = self.cross_entropy(tf.ones_like(real_output), real_output)
        fake_loss = self.cross_entropy(tf.zeros_like(fake_output), fake_output)
        return real_loss + fake_loss

    def generator_loss(self, fake_output):
        return self.cross_entropy(tf.ones_like(fake_output), fake_output)

    def _train_step(self, images):
        noise = tf.random.normal([tf.shape(images)[0], self.config.latent_dim])
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = self.generator(noise, training=True)
            real_output = self.discriminator(images, training=True)
            fake_output = self.discriminator(generated_images, training=True)
            gen_loss = self.generator_loss(fake_output)
            disc_loss = self.discriminator_loss(real_output, fake_output)
        gradients_of_generator = gen_tape.gradient(gen_loss, self.generator.trainable_variables)
        gradients_of_discriminator = disc_tape.gradient(
            disc_loss, self.discriminator.trainable_variables)
        self.generator_optimizer.apply_gradients(
            zip(gradients_of_generator, self.generator.trainable_variables))
        self.discriminator_optimizer.apply_gradients(
            zip(gradients_of_discriminator, self.discriminator.trainable_variables))
        return gen_loss, disc_loss
