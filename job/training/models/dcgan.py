"""DCGAN (Radford et al. 2016; TensorFlow's DCGAN tutorial), generalised to any H×W and depth:
a dense seed map, strided (transposed) 4x4 convolutions, batch norm, LeakyReLU, a tanh output.

An architecture module gives its layer plans (pure arithmetic: `job.training.capacity` prices
them and `covidct train --dry-run` prints them without TensorFlow) and its builders, which turn
the same plans into Keras layers (Keras is imported when a model is built).

The plans, for any H×W (square or not, powers of two or not), on `job.config.geometry`:

- the generator upsamples the seed map until the sides are a whole fraction of H×W again
  (H / 2^j x W / 2^j, j = the 2-powers H and W share, at most `stages`), crops the centre there,
  and runs the last j stages on exact sizes: 336x504 goes 6x8 -> 12x16 -> 24x32 -> 48x64, crop
  42x63 -> 84x126 -> 168x252 -> 336x504. Nothing is generated that is thrown away at full size;
- the discriminator has its own stages: stride-2 convolutions ('same' padding, so ceil-halving)
  down to the same few pixels (336x504 -> ... -> 11x16 -> 6x8), then a dense read-out. Its
  receptive field grows with every stage and every stride-1 layer at a coarse level, so it sees
  the whole lung field, not texture patches.

Widths double per stage away from the image, capped at `max_filters`; depth (`g_depth` and
`d_depth`: hidden weight layers, the seed project's measure) beyond the stages goes to stride-1
3x3 layers at the coarsest levels, where it is cheap.

A conditional pair (`config.conditional`) takes the class too: G adds a learned class embedding to
its latent vector (same input width, so the plan's figures hold), and D is a projection
discriminator (Miyato & Koyama 2018, "cGANs with Projection Discriminator"): its logit is
w.phi(x) + b + embed(y).phi(x), phi the features before the read-out, so D judges image and class
together. Call them through `job.training.models.generator_inputs` / `discriminator_inputs`.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from job.config import TrainConfig
from job.config.geometry import geometry, upsampling_stages
from job.training.layer_plan import Layer, spread, width

if TYPE_CHECKING:  # the plans import no TensorFlow; only the builders do, inside them
    import keras


def generator_plan(config: TrainConfig) -> list[Layer]:
    """Latent (latent_dim,) -> image (H, W, 1): what `models.build_generator` builds."""
    geo = geometry(config.height, config.width)
    stages = geo.stages
    norm = config.norm == "batch"
    extra = spread(config.g_depth - 1 - stages, stages)  # the dense projection is layer 1
    h, w = geo.seed
    c = width(config.g_filters, stages, config.max_filters)
    plan = [Layer("dense", (config.latent_dim,), (h * w * c,), bias=False, norm=norm, act=True),
            Layer("reshape", (h * w * c,), (h, w, c))]
    for level in range(stages + 1):  # level 0 is the seed map, level `stages` the image
        if level == geo.crop_level and geo.crops:
            (top, left) = ((h - geo.crop_to[0]) // 2, (w - geo.crop_to[1]) // 2)
            cut = ((top, h - geo.crop_to[0] - top), (left, w - geo.crop_to[1] - left))
            plan.append(Layer("crop", (h, w, c), (*geo.crop_to, c), crop=cut))
            h, w = geo.crop_to
        if level == stages:
            break
        for _ in range(extra[level]):
            plan.append(Layer("conv", (h, w, c), (h, w, c), 3, 1, bias=False, norm=norm, act=True))
        out = width(config.g_filters, stages - level - 1, config.max_filters)
        plan.append(Layer("deconv", (h, w, c), (2 * h, 2 * w, out), 4, 2, bias=False, norm=norm,
                          act=True))
        h, w, c = 2 * h, 2 * w, out
    plan.append(Layer("conv", (h, w, c), (h, w, 1), 3, 1))  # then tanh
    return plan


def discriminator_plan(config: TrainConfig) -> list[Layer]:
    """Image (H, W, 1) -> one logit: what `models.build_discriminator` builds."""
    stages = upsampling_stages(config.height, config.width)
    norm = config.norm == "batch"
    extra = spread(config.d_depth - stages, stages)
    h, w, c = config.height, config.width, 1
    plan = []
    for step in range(stages):  # image resolution first, lowest resolution last
        level = stages - 1 - step  # the generator's level numbering: 0 is the coarsest
        out = width(config.d_filters, step, config.max_filters)
        nh, nw = math.ceil(h / 2), math.ceil(w / 2)  # 'same' padding, stride 2
        # DCGAN: no normalisation on the first layer, which sees the raw image.
        plan.append(Layer("conv", (h, w, c), (nh, nw, out), 4, 2, norm=norm and step > 0, act=True))
        h, w, c = nh, nw, out
        for _ in range(extra[level]):
            plan.append(Layer("conv", (h, w, c), (h, w, c), 3, 1, norm=norm, act=True))
    plan += [Layer("flatten", (h, w, c), (h * w * c,)), Layer("dense", (h * w * c,), (1,))]
    return plan


def build_generator(
    config: TrainConfig, name: str = "generator", *, sync_batch_norm: bool = False,
    weight_seeds: random.Random | None = None,
) -> "keras.Model":
    """Latent vector (latent_dim,) [and class index ()] -> image (H, W, 1) in [-1, 1].

    `weight_seeds` seeds the initial weights (`layers.weight_seed`; default: `config.seed`'s)."""
    import keras

    from job.training.models import layers

    weight_seeds = weight_seeds or random.Random(config.seed)
    z = keras.Input((config.latent_dim,), name="z")
    h = z
    if config.conditional:
        label = keras.Input((), dtype="int32", name="label")
        h = keras.layers.Add()([z, layers.embedding(layers.NUM_CLASSES, config.latent_dim, weight_seeds,
                                                    "class_embedding")(label)])
    x = layers.apply_plan(h, generator_plan(config), config, sync_batch_norm, 0.0, weight_seeds)
    image = keras.layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model([z, label] if config.conditional else z, image, name=name)


def build_discriminator(
    config: TrainConfig, name: str = "discriminator", *, sync_batch_norm: bool = False,
    weight_seeds: random.Random | None = None,
) -> "keras.Model":
    """Image (H, W, 1) [and class index ()] -> one real/fake logit per image (float32).

    `weight_seeds` seeds the initial weights (`layers.weight_seed`; default: `config.seed`'s)."""
    import keras

    from job.training.models import layers

    weight_seeds = weight_seeds or random.Random(config.seed)
    image = keras.Input((config.height, config.width, 1), name="image")
    seeds = keras.Input((2,), dtype="int64", name="dropout_seed") if config.dropout else None
    extra = [seeds] if seeds is not None else []
    plan = discriminator_plan(config)
    if not config.conditional:
        logit = layers.apply_plan(image, plan, config, sync_batch_norm, config.dropout, weight_seeds, seeds)
        return keras.Model([image, *extra] if extra else image, logit, name=name)
    label = keras.Input((), dtype="int32", name="label")
    features = layers.apply_plan(image, plan[:-1], config, sync_batch_norm, config.dropout, weight_seeds,
                                 seeds)
    features = keras.layers.Activation("linear", dtype="float32")(features)
    logit = layers.apply_plan(features, plan[-1:], config, sync_batch_norm, 0.0, weight_seeds)
    embedded = layers.embedding(layers.NUM_CLASSES, features.shape[-1], weight_seeds, "projection")(label)
    projection = keras.layers.Dot(axes=1, dtype="float32")([embedded, features])
    return keras.Model([image, label, *extra], keras.layers.Add(dtype="float32")([logit, projection]),
                       name=name)
