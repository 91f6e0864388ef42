"""Architectures, chosen by name (`config.model`), as big_vision and flax choose theirs.

Each architecture is one module here, named as `job.config.schema.MODELS` lists it, giving:

    generator_plan(config) / discriminator_plan(config) -> list[layer_plan.Layer]
        pure arithmetic: `job.training.capacity` prices them, `--dry-run` prints them;
    build_generator(config, name, *, sync_batch_norm) -> keras.Model
        z (latent_dim,) [and class ()] -> image (H, W, 1) in [-1, 1];
    build_discriminator(config, name, *, sync_batch_norm) -> keras.Model
        image (H, W, 1) [and class ()] [and dropout seeds (2,)] -> one float32 logit.

Adding one: the module, and its name in `MODELS` (which the config's checks and the sweep space
read). Shared Keras pieces are in `layers`. This package imports no TensorFlow itself, so the
plans stay free of it.
"""

from __future__ import annotations

import importlib
import random
from types import ModuleType

from job.config import TrainConfig


def architecture(config: TrainConfig) -> ModuleType:
    """The module of `config.model` (a validated config names one of `MODELS`)."""
    return importlib.import_module(f"{__name__}.{config.model}")


def generator_plan(config: TrainConfig) -> list:
    return architecture(config).generator_plan(config)


def discriminator_plan(config: TrainConfig) -> list:
    return architecture(config).discriminator_plan(config)


def build_generator(config: TrainConfig, name: str = "generator", *, sync_batch_norm: bool = False,
                    weight_seeds: random.Random | None = None):
    return architecture(config).build_generator(config, name, sync_batch_norm=sync_batch_norm,
                                                weight_seeds=weight_seeds)


def build_discriminator(config: TrainConfig, name: str = "discriminator", *,
                        sync_batch_norm: bool = False, weight_seeds: random.Random | None = None):
    return architecture(config).build_discriminator(config, name, sync_batch_norm=sync_batch_norm,
                                                    weight_seeds=weight_seeds)


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
