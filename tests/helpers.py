"""Small helpers shared by the tests (fixtures live in conftest.py)."""

import json
import pathlib
import urllib.request

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


def one_step(config: C.TrainConfig, replicas: int, images: tf.data.Dataset | None = None):
    """One training step on a fresh state over `replicas` devices, on the first global batch of
    `images` (default: `random_images()`), with EMA decay 0.9: (state, {metric: float})."""
    from job.training.data import epoch_batches
    from job.training.step import build_state, make_train_step
    from job.training.strategy import strategy_for

    strategy = strategy_for(replicas)
    state = build_state(config, strategy)
    step = make_train_step(config, state, strategy)
    images = random_images() if images is None else images
    batch = next(iter(strategy.experimental_distribute_dataset(epoch_batches(images, config, 0))))
    return state, {k: float(v) for k, v in step(batch, tf.constant(0.9)).items()}


def flat_weights(*models) -> np.ndarray:
    """Every weight of `models`, raveled into one float array (to compare two states)."""
    return np.concatenate([v.numpy().ravel() for m in models for v in m.weights])


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """A true shift of (N, H, W, 1) images: content leaves one edge and black (-1) comes in."""
    out = np.full_like(images, -1.0)
    h, w = images.shape[1:3]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
        images[:, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


def answers(url: str) -> bool:
    """Whether `url` answers 200 within 2 s (a server the tests started is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def straight_and_resumed(data_dir: str, tmp_path, **sets) -> list:
    """A 3-epoch smoke run ("a") and one stopped after 2 epochs then resumed to 3 ("b"), both
    with `sets`: the checkpoint readers of their epoch-3 checkpoints, [a, b]."""
    from job.training.loop import fit

    fit(smoke(data_dir, tmp_path / "a", epochs=3, **sets))
    fit(smoke(data_dir, tmp_path / "b", epochs=2, **sets))
    fit(smoke(data_dir, tmp_path / "b", epochs=3, **sets))
    return [tf.train.load_checkpoint(str(sorted((tmp_path / run / "checkpoints").glob("e000003*"))[0] / "ckpt"))
            for run in ("a", "b")]


def lines(path) -> list[dict]:
    """A JSON-lines file (a run's metrics.jsonl) as dicts."""
    return [json.loads(l) for l in pathlib.Path(path).read_text().splitlines()]


def checkpoint_arrays(run_uri) -> dict:
    """Every variable of the newest complete checkpoint of `run_uri`, by its checkpoint key."""
    from job import run as run_layout
    from job import storage
    from job.checkpoint import CheckpointStore

    store = CheckpointStore(storage.Mirror(str(run_uri)), keep=3)
    folder = store.fetch(store.latest())
    reader = tf.train.load_checkpoint(str(folder / run_layout.CKPT_PREFIX))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "save_counter" not in k and k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
