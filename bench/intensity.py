"""Grey levels at fixed compute (issue 19): `--preset seed28 --set labels=covid` on the COVID lung
crops (28-lungs) for a wall-clock budget, then the EMA generator's intensity W1 and SWD against the
real hold-out, each in units of its real floor (`job.metrics.HeldOutScorer`).

The same trained weights are drawn two ways, so the comparison is made in one run: with standing
statistics (`job.training.standing_stats`, what the job does before it draws) and with the
batch-norm moving averages the EMA generator copies from the raw one (what it did before). The
first step (tracing) is run before the clock starts.
"""

from __future__ import annotations

import time

from bench.runners import strategy as one_replica
from job.config import TrainConfig, override, resolve
from job.metrics import HeldOutScorer
from job.training import data
from job.training.standing_stats import standing_statistics
from job.training.step import Stepper, build_state, make_generate, make_train_step

DATASET_CONFIG = "28-lungs"
SAMPLES_IN_GRID = 8


def intensity_config(data_dir: str, synthetic: bool) -> TrainConfig:
    return override(resolve("seed28"), dict(
        data_dir=data_dir, dataset_config=DATASET_CONFIG, labels="covid", name="bench-intensity",
        allow_synthetic_data=synthetic))


def run(data_dir: str, budget_seconds: float, synthetic: bool = False) -> dict:
    """Train for `budget_seconds`; the hold-out figures of the EMA generator drawn both ways."""
    config = intensity_config(data_dir, synthetic)
    images, count = data.load_images(config)
    real = data.real_sample(images, count)
    holdout = data.load_holdout(config)
    strategy = one_replica()
    state = build_state(config, strategy)
    stepper = Stepper(config, make_train_step(config, state, strategy))
    batches = iter(strategy.experimental_distribute_dataset(data.run_batches(images, config, 0)))
    stepper(next(batches))  # traces; not on the clock
    steps, t0 = 1, time.perf_counter()
    while time.perf_counter() - t0 < budget_seconds:
        stepper(next(batches))
        steps += 1
    z = data.fixed_noise(config, config.metric_num_images, salt=1)
    generate = make_generate(state)
    moving = generate(z).numpy()  # the statistics the train step copied from the raw generator
    standing_statistics(state.ema_generator, config)
    standing = generate(z).numpy()
    scorer = HeldOutScorer(real, holdout, seed=config.seed)
    return {
        "config": config,
        "real_images": count,
        "holdout_images": len(holdout),
        "steps": steps,
        "kimg": steps * config.global_batch_size / 1000,
        "standing": scorer(standing),
        "moving": scorer(moving),
        "real_mean": float(holdout.mean()),
        "standing_mean": float(standing.mean()),
        "moving_mean": float(moving.mean()),
        "grid_rows": [
            ("real hold-out", holdout[:SAMPLES_IN_GRID]),
            ("EMA G, standing statistics", standing[:SAMPLES_IN_GRID]),
            ("EMA G, moving averages", moving[:SAMPLES_IN_GRID]),
        ],
    }
