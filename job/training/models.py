"""Generator and discriminator builders: pure Keras, no I/O, any H×W the config allows.

Both follow the DCGAN tutorial's shape (dense seed map, strided (transposed) convolutions, batch
norm, LeakyReLU, tanh output) generalised to any resolution and depth. The layer-by-layer plan
(seed map, where the generator crops to sizes that 2^stages does not divide, the
discriminator's own stages, widths, where the extra depth goes) is pure arithmetic in
`job.training.layer_plan`, which `job.training.capacity` prices (parameters, FLOPs, receptive field, checkpoint
bytes); these builders turn the plan into layers, so the figures and the models cannot drift.

A conditional pair (`config.conditional`) takes the class too: G adds a learned class embedding to
its latent vector (same input width, so the plan's figures hold), and D is a projection
discriminator (Miyato & Koyama 2018, "cGANs with Projection Discriminator"): its logit is
w.phi(x) + b + embed(y).phi(x), phi the features before the read-out, so D judges image and class
together. Call them through `generator_inputs` / `discriminator_inputs`.

Batch norm is synchronised across replicas when asked (`sync_batch_norm`: `job.training.step` asks
unless the step is compiled with XLA, `job.training.step.use_xla`), so one replica and two replicas
compute the same update on the same global batch. Inference (and the tutorial-style reference
in bench/) uses plain batch norm. Layers run in the configured precision; logits and images leave
in float32.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from job.config import TrainConfig
from job.training.layer_plan import Layer, discriminator_plan, generator_plan
from tfds_covidct.covid_ct.sources import LABELS

NUM_CLASSES = len(LABELS)  # covid_ct's classes; a conditional model embeds each


def _activation(config: TrainConfig, dtype) -> keras.layers.Layer:
    if config.activation == "relu":
        return keras.layers.ReLU(dtype=dtype)
    return keras.layers.LeakyReLU(negative_slope=0.2, dtype=dtype)


def _layer(spec: Layer, dtype, name: str | None = None) -> keras.layers.Layer:
    """The Keras layer for one plan entry (without its norm and activation)."""
    if spec.kind == "dense":
        return keras.layers.Dense(spec.out_shape[-1], use_bias=spec.bias, dtype=dtype, name=name)
    if spec.kind == "reshape":
        return keras.layers.Reshape(spec.out_shape, dtype=dtype)
    if spec.kind == "flatten":
        return keras.layers.Flatten(dtype=dtype)
    if spec.kind == "crop":
        return keras.layers.Cropping2D(spec.crop, dtype=dtype)
    kind = keras.layers.Conv2DTranspose if spec.kind == "deconv" else keras.layers.Conv2D
    return kind(spec.out_shape[-1], spec.kernel, strides=spec.stride, padding="same",
                use_bias=spec.bias, dtype=dtype, name=name)


class SeededDropout(keras.layers.Layer):
    """Dropout whose mask is a pure function of each example's seed and the layer's index.

    Called on [x, seeds], seeds (B, 2) int64 from the input pipeline (`job.training.data`), like
    the augmentation parameters. Keras' `Dropout` draws from a SeedGenerator whose state is in no
    checkpoint and is the same on every replica: a resumed run then differs from a straight one,
    and replicas share masks. Here the mask of example i is the same on any number of replicas and
    after any resume. Inverted dropout (kept units scaled by 1 / (1 - rate)), as Keras'.
    """

    def __init__(self, rate: float, index: int, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.index = rate, index

    def call(self, inputs, training=False):
        x, seeds = inputs
        if not training:
            return x
        shape, salt = tf.shape(x)[1:], tf.constant([0, self.index + 1], tf.int64)
        keep = tf.map_fn(lambda s: tf.random.stateless_uniform(shape, seed=s + salt) >= self.rate,
                         tf.cast(seeds, tf.int64), fn_output_signature=tf.bool)
        return tf.where(keep, x / (1.0 - self.rate), tf.zeros_like(x))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "index": self.index}


def _apply(x, plan: list[Layer], config: TrainConfig, sync_batch_norm: bool, dropout: float,
           seeds=None):
    """Run `x` through the plan's layers: each followed by its batch norm, activation and dropout
    (`SeededDropout` on the per-example `seeds`).

    A dense read-out at the end is D's logit: float32 and named "logit".
    """
    dtype = config.precision
    for i, spec in enumerate(plan):
        logit = i == len(plan) - 1 and spec.kind == "dense"
        x = _layer(spec, "float32" if logit else dtype, name="logit" if logit else None)(x)
        if spec.norm:
            x = keras.layers.BatchNormalization(synchronized=sync_batch_norm, dtype=dtype)(x)
        if spec.act:
            x = _activation(config, dtype)(x)
            if dropout:
                x = SeededDropout(dropout, i, dtype=dtype)([x, seeds])
    return x


def build_generator(
    config: TrainConfig, name: str = "generator", *, sync_batch_norm: bool = False
) -> keras.Model:
    """Latent vector (latent_dim,) [and class index ()] -> image (H, W, 1) in [-1, 1]."""
    z = keras.Input((config.latent_dim,), name="z")
    h = z
    if config.conditional:
        label = keras.Input((), dtype="int32", name="label")
        h = keras.layers.Add()([z, keras.layers.Embedding(NUM_CLASSES, config.latent_dim,
                                                          name="class_embedding")(label)])
    x = _apply(h, generator_plan(config), config, sync_batch_norm, dropout=0.0)
    image = keras.layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model([z, label] if config.conditional else z, image, name=name)


def build_discriminator(
    config: TrainConfig, name: str = "discriminator", *, sync_batch_norm: bool = False
) -> keras.Model:
    """Image (H, W, 1) [and class index ()] -> one real/fake logit per image (float32)."""
    image = keras.Input((config.height, config.width, 1), name="image")
    seeds = keras.Input((2,), dtype="int64", name="dropout_seed") if config.dropout else None
    extra = [seeds] if seeds is not None else []
    plan = discriminator_plan(config)
    if not config.conditional:
        logit = _apply(image, plan, config, sync_batch_norm, config.dropout, seeds)
        return keras.Model([image, *extra] if extra else image, logit, name=name)
    label = keras.Input((), dtype="int32", name="label")
    features = _apply(image, plan[:-1], config, sync_batch_norm, config.dropout, seeds)
    features = keras.layers.Activation("linear", dtype="float32")(features)
    logit = _apply(features, plan[-1:], config, sync_batch_norm, dropout=0.0)
    embedded = keras.layers.Embedding(NUM_CLASSES, features.shape[-1], name="projection")(label)
    projection = keras.layers.Dot(axes=1, dtype="float32")([embedded, features])
    return keras.Model([image, label, *extra], keras.layers.Add(dtype="float32")([logit, projection]),
                       name=name)


def generator_inputs(config: TrainConfig, z, labels):
    """What `build_generator`'s model takes: z, or [z, labels] for a conditional run."""
    return [z, labels] if config.conditional else z


def discriminator_inputs(config: TrainConfig, images, labels, dropout_seeds=None):
    """What `build_discriminator`'s model takes: images, [images, labels] for a conditional run,
    and the per-example dropout seeds (B, 2) last when dropout is on."""
    inputs = [images] + ([labels] if config.conditional else [])
    if config.dropout:
        inputs.append(dropout_seeds)
    return inputs if len(inputs) > 1 else images


def hidden_layer_count(model: keras.Model) -> int:
    """Hidden weight layers (dense/conv) excluding the output layer: the seed's depth measure."""
    weighted = [l for l in model.layers if isinstance(l, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    return len(weighted) - 1
