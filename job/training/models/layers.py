"""Keras pieces every architecture shares: a plan entry's layer, the activation, seeded dropout,
and `apply_plan`, which turns a layer plan (`job.training.layer_plan.Layer`s) into layers, so
an architecture's figures (`job.training.capacity`) and its models cannot drift.

Batch norm is synchronised across replicas when asked (`sync_batch_norm`: `job.training.step` asks
unless the step is compiled with XLA, `job.training.step.use_xla`), so one replica and two replicas
compute the same update on the same global batch. Layers run in the configured precision; logits
leave in float32.
"""

from __future__ import annotations

import random

import keras
import tensorflow as tf

from job.config import TrainConfig
from job.training.layer_plan import Layer
from tfds_covidct.covid_ct.sources import LABELS

NUM_CLASSES = len(LABELS)  # covid_ct's classes; a conditional model embeds each


def _activation(config: TrainConfig, dtype) -> keras.layers.Layer:
    if config.activation == "relu":
        return keras.layers.ReLU(dtype=dtype)
    return keras.layers.LeakyReLU(negative_slope=0.2, dtype=dtype)


def weight_seed(weight_seeds: random.Random) -> int:
    """The seed of one layer's random initializer, from the model's own seed stream.

    Keras seeds an initializer made without one from Python's global `random` (`randint(1, 1e9)`
    at construction): any other thread drawing from it meanwhile (google-api-core's retry
    jitter in a background upload) changed the weights a seed gave. The same draw from a private
    `random.Random(config.seed)` gives the weights Keras gave after `set_random_seed(config.seed)`.
    """
    return weight_seeds.randint(1, int(1e9))


def _layer(spec: Layer, dtype, weight_seeds: random.Random, name: str | None = None) -> keras.layers.Layer:
    """The Keras layer for one plan entry (without its norm and activation)."""
    if spec.kind in ("dense", "conv", "deconv"):
        init = keras.initializers.GlorotUniform(seed=weight_seed(weight_seeds))
    if spec.kind == "dense":
        return keras.layers.Dense(spec.out_shape[-1], use_bias=spec.bias, dtype=dtype, name=name,
                                  kernel_initializer=init)
    if spec.kind == "reshape":
        return keras.layers.Reshape(spec.out_shape, dtype=dtype)
    if spec.kind == "flatten":
        return keras.layers.Flatten(dtype=dtype)
    if spec.kind == "crop":
        return keras.layers.Cropping2D(spec.crop, dtype=dtype)
    kind = keras.layers.Conv2DTranspose if spec.kind == "deconv" else keras.layers.Conv2D
    return kind(spec.out_shape[-1], spec.kernel, strides=spec.stride, padding="same",
                use_bias=spec.bias, dtype=dtype, name=name, kernel_initializer=init)


def embedding(classes: int, features: int, weight_seeds: random.Random, name: str) -> keras.layers.Layer:
    """A class embedding with Keras' default initializer ("uniform", +-0.05), seeded like `_layer`."""
    return keras.layers.Embedding(classes, features, name=name, embeddings_initializer=
                                  keras.initializers.RandomUniform(-0.05, 0.05, seed=weight_seed(weight_seeds)))


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


def apply_plan(x, plan: list[Layer], config: TrainConfig, sync_batch_norm: bool, dropout: float,
               weight_seeds: random.Random, seeds=None):
    """Run `x` through the plan's layers: each followed by its batch norm, activation and dropout
    (`SeededDropout` on the per-example `seeds`).

    A dense read-out at the end is D's logit: float32 and named "logit".
    """
    dtype = config.precision
    for i, spec in enumerate(plan):
        logit = i == len(plan) - 1 and spec.kind == "dense"
        x = _layer(spec, "float32" if logit else dtype, weight_seeds, name="logit" if logit else None)(x)
        if spec.norm:
            x = keras.layers.BatchNormalization(synchronized=sync_batch_norm, dtype=dtype)(x)
        if spec.act:
            x = _activation(config, dtype)(x)
            if dropout:
                x = SeededDropout(dropout, i, dtype=dtype)([x, seeds])
    return x


def hidden_layer_count(model: keras.Model) -> int:
    """Hidden weight layers (dense/conv) excluding the output layer: the seed's depth measure."""
    weighted = [l for l in model.layers if isinstance(l, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    return len(weighted) - 1
