"""Step runners: one object per contender (the tutorial reference, the job in its variants) that
runs N training steps from its own input pipeline, so the benchmarks can time them alike.

Job variants exist to price each feature separately: augmentation, EMA, XLA and the
MirroredStrategy wrapper. They all call the job's own `build_state` / `make_train_step` /
`Stepper` / `run_batches`.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from bench.reference import TutorialGan, tutorial_dataset
from job.config import TrainConfig
from job.training.data import run_batches
from job.training.step import Stepper, build_state, make_train_step


@dataclasses.dataclass
class Runner:
    """`run(steps)` trains `steps` steps and returns the last generator loss (blocking)."""

    name: str
    config: TrainConfig
    generator: keras.Model
    discriminator: keras.Model
    step: Callable[[object], object]
    batches: Iterator  # endless, as the training loop reads them
    replicas: int = 1
    state: object = None  # the job's GanState (None for the reference): what a checkpoint saves

    def run(self, steps: int) -> float:
        out = None
        for _ in range(steps):
            out = self.step(next(self.batches))
        loss = out["g_loss"] if isinstance(out, dict) else out[0]
        return float(np.asarray(loss))


def reference_runner(config: TrainConfig, images: np.ndarray, name: str = "reference") -> Runner:
    gan = TutorialGan(config)
    dataset = tutorial_dataset(images, config.global_batch_size)
    epochs = (batch for _ in itertools.count() for batch in dataset)  # `for epoch: for batch in dataset`
    return Runner(name, config, gan.generator, gan.discriminator, gan.train_step, epochs)


def job_runner(
    name: str,
    config: TrainConfig,
    images: np.ndarray,
    strategy: tf.distribute.Strategy,
) -> Runner:
    """The job's step and input pipeline under `strategy` (a MirroredStrategy, or the default
    strategy to price the MirroredStrategy wrapper)."""
    state = build_state(config, strategy)
    step = Stepper(config, make_train_step(config, state, strategy))
    source = tf.data.Dataset.from_tensor_slices(images).cache()
    batches = iter(strategy.experimental_distribute_dataset(run_batches(source, config, 0)))
    return Runner(name, config, state.generator, state.discriminator, step, batches,
                  strategy.num_replicas_in_sync, state)


CPU_REPLICAS = 2  # logical CPU devices the bench splits the CPU into (before TF initialises)


def strategy(multi: bool = False) -> tf.distribute.Strategy:
    """1 replica (the first GPU, else the first logical CPU), or every GPU / 2 logical CPUs."""
    from job.training import strategy as strategies

    if not multi:
        return strategies.one_replica_strategy()
    return strategies.strategy_for(0 if tf.config.list_logical_devices("GPU") else CPU_REPLICAS)


def random_images(config: TrainConfig, count: int, seed: int = 0) -> np.ndarray:
    """uint8 noise images (N, H, W, 1): step speed does not depend on what the pixels show."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, config.height, config.width, 1), dtype=np.uint8)
