"""Quality at fixed compute: the job (default features) and the tutorial-style reference train
for the same wall-clock budget on the same data; SWD of each against the real images.

Both use the same architecture and hyperparameters (the `demo` preset: 64x64, small enough for
a CPU to take many steps in the budget). The first step of each (tracing) is run before the clock
starts; after that each trains until the budget is spent. The job is judged on the EMA generator,
what it samples, evaluates and exports; its raw generator is reported too.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from bench.reference import TutorialGan, tutorial_dataset
from bench.runners import strategy as one_replica
from job import metrics
from job.config import TrainConfig, override, resolve
from job.training import data
from job.training.standing_stats import standing_statistics
from job.training.step import Stepper, build_state, make_generate, make_train_step

SAMPLES_IN_GRID = 8


def quality_config(data_dir: str) -> TrainConfig:
    return override(resolve("demo"), dict(data_dir=data_dir, name="bench-quality"))


@dataclasses.dataclass
class Trained:
    steps: int
    seconds: float
    images: np.ndarray  # generated, (N, H, W, 1) in [-1, 1]


def _for_budget(step_once, budget_seconds: float) -> tuple[int, float]:
    step_once()  # traces; not on the clock
    steps = 1
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < budget_seconds:
        step_once()
        steps += 1
    return steps, time.perf_counter() - t0


def train_job(config: TrainConfig, images, budget_seconds: float, z) -> dict[str, Trained]:
    strategy = one_replica()
    state = build_state(config, strategy)
    train_step = Stepper(config, make_train_step(config, state, strategy))
    batches = iter(strategy.experimental_distribute_dataset(data.run_batches(images, config, 0)))

    def step_once():
        return train_step(next(batches))["g_loss"].numpy()

    steps, seconds = _for_budget(step_once, budget_seconds)
    standing_statistics(state.ema_generator, config)  # as the job does before it draws
    return {
        "ema": Trained(steps, seconds, make_generate(state, use_ema=True)(z).numpy()),
        "raw": Trained(steps, seconds, make_generate(state, use_ema=False)(z).numpy()),
    }


def train_reference(config: TrainConfig, real_uint8: np.ndarray, budget_seconds: float, z) -> Trained:
    gan = TutorialGan(config)
    dataset = tutorial_dataset(real_uint8, config.global_batch_size)
    state = {"it": iter(dataset)}

    def step_once():
        while True:
            batch = next(state["it"], None)
            if batch is not None:
                return gan.train_step(batch)[0].numpy()
            state["it"] = iter(dataset)

    steps, seconds = _for_budget(step_once, budget_seconds)
    return Trained(steps, seconds, gan.generate(z).numpy())


def run(data_dir: str, budget_seconds: float) -> dict:
    """Train both for `budget_seconds`; SWD of each against every real training image."""
    config = quality_config(data_dir)
    images, count = data.load_images(config)
    real = data.real_sample(images, count)  # [-1, 1]
    real_uint8 = np.clip(np.round((real + 1.0) * 127.5), 0, 255).astype(np.uint8)
    z = data.fixed_noise(config, count, salt=1)
    job = train_job(config, images, budget_seconds, z)
    reference = train_reference(config, real_uint8, budget_seconds, z)
    return {
        "config": config,
        "real_images": count,
        "swd_job_ema": metrics.swd(real, job["ema"].images, seed=config.seed),
        "swd_job_raw": metrics.swd(real, job["raw"].images, seed=config.seed),
        "swd_reference": metrics.swd(real, reference.images, seed=config.seed),
        "steps_job": job["ema"].steps,
        "steps_reference": reference.steps,
        "grid_rows": [
            ("real", real[:SAMPLES_IN_GRID]),
            ("job (EMA G)", job["ema"].images[:SAMPLES_IN_GRID]),
            ("job (raw G)", job["raw"].images[:SAMPLES_IN_GRID]),
            ("reference", reference.images[:SAMPLES_IN_GRID]),
        ],
    }
