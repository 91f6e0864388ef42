"""Generator and discriminator builders: pure Keras, no I/O, any H×W the config allows.

Both follow the DCGAN tutorial's shape (dense seed map, strided (transposed) convolutions, batch
norm, LeakyReLU, tanh output) generalised to any resolution and depth:

- `stages` 2x steps link the seed map (H/2^s × W/2^s) to the image (`config.upsampling_stages`);
- `g_depth` counts the dense projection too (hidden layers = weighted layers but the output);
- the rest of `g_depth` / `d_depth` are stride-1 3×3 layers, spread round-robin over the lower
  resolutions, lowest first, where they are cheap: depth costs little compute;
- widths double per stage away from the image, capped at `max_filters`.

Batch norm is synchronised across replicas when asked (`sync_batch_norm`: `job.step` asks
unless the step is compiled with XLA, `job.step.use_xla`), so one replica and two replicas
compute the same update on the same global batch. Inference (and the tutorial-style reference
in bench/) uses plain batch norm. Layers run in the configured precision; logits and images leave
in float32.
"""

from __future__ import annotations

import keras

from job.config import TrainConfig, upsampling_stages


def _spread(extra: int, levels: int) -> list[int]:
    """How many stride-1 layers each resolution level gets, lowest level first."""
    counts = [0] * levels
    for i in range(extra):
        counts[i % levels] += 1
    return counts


def _activation(config: TrainConfig, dtype) -> keras.layers.Layer:
    if config.activation == "relu":
        return keras.layers.ReLU(dtype=dtype)
    return keras.layers.LeakyReLU(negative_slope=0.2, dtype=dtype)


def _norm(config: TrainConfig, dtype, synchronized: bool) -> list[keras.layers.Layer]:
    if config.norm == "batch":
        return [keras.layers.BatchNormalization(synchronized=synchronized, dtype=dtype)]
    return []


def _width(base: int, level_from_image: int, cap: int) -> int:
    return min(base * 2**level_from_image, cap)


def build_generator(
    config: TrainConfig, name: str = "generator", *, sync_batch_norm: bool = False
) -> keras.Model:
    """Latent vector (latent_dim,) -> image (H, W, 1) in [-1, 1]."""
    dtype = config.precision
    stages = upsampling_stages(config.height, config.width)
    h0, w0 = config.height >> stages, config.width >> stages
    extra = _spread(config.g_depth - 1 - stages, stages)  # the dense projection is layer 1
    c0 = _width(config.g_filters, stages, config.max_filters)

    z = keras.Input((config.latent_dim,), name="z")
    x = keras.layers.Dense(h0 * w0 * c0, use_bias=False, dtype=dtype)(z)
    for layer in _norm(config, dtype, sync_batch_norm):
        x = layer(x)
    x = _activation(config, dtype)(x)
    x = keras.layers.Reshape((h0, w0, c0), dtype=dtype)(x)
    for level in range(stages):  # level 0 is the seed map
        width = _width(config.g_filters, stages - level, config.max_filters)
        for _ in range(extra[level]):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, dtype=dtype)(x)
            for layer in _norm(config, dtype, sync_batch_norm):
                x = layer(x)
            x = _activation(config, dtype)(x)
        out_width = _width(config.g_filters, stages - level - 1, config.max_filters)
        x = keras.layers.Conv2DTranspose(
            out_width, 4, strides=2, padding="same", use_bias=False, dtype=dtype
        )(x)
        for layer in _norm(config, dtype, sync_batch_norm):
            x = layer(x)
        x = _activation(config, dtype)(x)
    x = keras.layers.Conv2D(1, 3, padding="same", dtype=dtype)(x)
    image = keras.layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model(z, image, name=name)


def build_discriminator(
    config: TrainConfig, name: str = "discriminator", *, sync_batch_norm: bool = False
) -> keras.Model:
    """Image (H, W, 1) -> one real/fake logit per image (float32)."""
    dtype = config.precision
    stages = upsampling_stages(config.height, config.width)
    extra = _spread(config.d_depth - stages, stages)

    image = keras.Input((config.height, config.width, 1), name="image")
    x = image
    for step in range(stages):  # image resolution first, lowest resolution last
        level = stages - 1 - step  # the same level numbering as the generator's
        width = _width(config.d_filters, step, config.max_filters)
        x = keras.layers.Conv2D(width, 4, strides=2, padding="same", dtype=dtype)(x)
        if step > 0:  # DCGAN: no normalisation on the first layer, which sees the raw image
            for layer in _norm(config, dtype, sync_batch_norm):
                x = layer(x)
        x = _activation(config, dtype)(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, dtype=dtype)(x)
        for _ in range(extra[level]):
            x = keras.layers.Conv2D(width, 3, padding="same", dtype=dtype)(x)
            for layer in _norm(config, dtype, sync_batch_norm):
                x = layer(x)
            x = _activation(config, dtype)(x)
            if config.dropout:
                x = keras.layers.Dropout(config.dropout, dtype=dtype)(x)
    x = keras.layers.Flatten(dtype=dtype)(x)
    logit = keras.layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model(image, logit, name=name)


def hidden_layer_count(model: keras.Model) -> int:
    """Hidden weight layers (dense/conv) excluding the output layer: the seed's depth measure."""
    weighted = [l for l in model.layers if isinstance(l, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    return len(weighted) - 1
