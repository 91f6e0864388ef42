"""Generator and discriminator builders: pure Keras, no I/O, any H×W the config allows.

Both follow the DCGAN tutorial's shape (dense seed map, strided (transposed) convolutions, batch
norm, LeakyReLU, tanh output) generalised to any resolution and depth. The layer-by-layer plan
(seed map, where the generator crops to sizes that 2^stages does not divide, the
discriminator's own stages, widths, where the extra depth goes) is pure arithmetic in
`job.training.capacity`, which also prices it (parameters, FLOPs, receptive field, checkpoint
bytes); these builders turn the plan into layers, so the figures and the models cannot drift.

Batch norm is synchronised across replicas when asked (`sync_batch_norm`: `job.step` asks
unless the step is compiled with XLA, `job.step.use_xla`), so one replica and two replicas
compute the same update on the same global batch. Inference (and the tutorial-style reference
in bench/) uses plain batch norm. Layers run in the configured precision; logits and images leave
in float32.
"""

from __future__ import annotations

import keras

from job.config import TrainConfig
from job.training.capacity import Layer, discriminator_plan, generator_plan


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


def _apply(x, plan: list[Layer], config: TrainConfig, sync_batch_norm: bool, dropout: float):
    """Run `x` through the plan's layers: each followed by its batch norm, activation and dropout.

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
                x = keras.layers.Dropout(dropout, dtype=dtype)(x)
    return x


def build_generator(
    config: TrainConfig, name: str = "generator", *, sync_batch_norm: bool = False
) -> keras.Model:
    """Latent vector (latent_dim,) -> image (H, W, 1) in [-1, 1]."""
    z = keras.Input((config.latent_dim,), name="z")
    x = _apply(z, generator_plan(config), config, sync_batch_norm, dropout=0.0)
    image = keras.layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model(z, image, name=name)


def build_discriminator(
    config: TrainConfig, name: str = "discriminator", *, sync_batch_norm: bool = False
) -> keras.Model:
    """Image (H, W, 1) -> one real/fake logit per image (float32)."""
    image = keras.Input((config.height, config.width, 1), name="image")
    logit = _apply(image, discriminator_plan(config), config, sync_batch_norm, dropout=config.dropout)
    return keras.Model(image, logit, name=name)


def hidden_layer_count(model: keras.Model) -> int:
    """Hidden weight layers (dense/conv) excluding the output layer: the seed's depth measure."""
    weighted = [l for l in model.layers if isinstance(l, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    return len(weighted) - 1
