"""Small helpers shared by the tests (fixtures live in conftest.py)."""

import numpy as np
import tensorflow as tf

from job import config as C


def smoke(data_dir: str, run, **sets) -> C.TrainConfig:
    """The `smoke` preset on `data_dir`, writing to `run`, with `sets` as --set field=value."""
    return C.resolve("smoke", sets=[f"{k}={v}" for k, v in sets.items()],
                     extra={"data_dir": data_dir, "run_uri": str(run)})


def random_images(n: int = 32, size: int = 28, seed: int = 0) -> tf.data.Dataset:
    """uint8 noise images (size, size, 1): a step's arithmetic does not depend on the pixels."""
    rng = np.random.RandomState(seed)
    return tf.data.Dataset.from_tensor_slices(rng.randint(0, 256, (n, size, size, 1)).astype("uint8"))
