"""The input pipeline: the prepared `covid_ct` dataset -> per-epoch batches for the step.

Every random number a step uses (the latent vectors, the augmentation parameters for real and
generated images, the shuffle order) is a pure function of (seed, epoch, example index). So an
epoch's batches are the same whatever the number of replicas, and a run resumed mid-epoch
(`skip_batches`) sees exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from job import dataset_record, storage
from job.config import TrainConfig
from job.errors import ConfigError
from job.training.augment import AUG_PARAMS

DATASET = dataset_record.DATASET
COVID = "covid"  # the class name the evaluation's classifier treats as positive
DROPOUT_SALT = 1 << 40  # keeps the dropout seeds' stream apart from z's and the augmentations'
SHUFFLE_SALT = 17  # second word of the per-epoch permutation seed (the first is the epoch seed)


@dataclasses.dataclass(frozen=True)
class Description:
    """The run's dataset as `describe` found it: one opening of the prepared builder.

    `class_counts`: training images per selected class that has any, in label-index order.
    """

    name: str  # "covid_ct/<dataset_config>"
    class_names: tuple[str, ...]  # every class of the dataset, in label-index order
    class_counts: dict[str, int]
    builder: tfds.core.DatasetBuilder = dataclasses.field(compare=False, repr=False)

    @property
    def train_images(self) -> int:
        return sum(self.class_counts.values())

    @property
    def class_ids(self) -> list[int]:
        """Label indices of the classes the run trains on (`class_counts`' keys)."""
        return [self.class_names.index(name) for name in self.class_counts]

    def builder_for(self, split: str) -> tfds.core.DatasetBuilder:
        """The builder, once it is known to hold `split`.

        Raises:
            ConfigError (exit 2): the prepared dataset has no such split.
        """
        return _with_split(self.builder, self.name, split)


def _with_split(builder: tfds.core.DatasetBuilder, name: str, split: str) -> tfds.core.DatasetBuilder:
    if split not in builder.info.splits:
        raise ConfigError("data_dir", f"dataset {name} in {builder.data_dir!r} has no split {split!r}")
    return builder


def describe(config: TrainConfig) -> Description:
    """Open the run's prepared covid_ct builder once (a verified local copy of a bucket's data_dir)
    and say what it trains on: class names from the builder's info, images per selected class
    from a pass over the training split's labels (images are not decoded).

    The loop, the plan line and the sweep driver read this one description.

    Raises:
        ConfigError (exit 2): the dataset is not prepared in data_dir (or by another builder
            version), holds demo phantoms the config does not allow, has no training split, or
            `labels` names a class it does not have.
        StorageError (exit 1): data_dir cannot be read.
    """
    import tfds_covidct.covid_ct.covid_ct_dataset_builder  # noqa: F401  (registers covid_ct)

    name = f"{DATASET}/{config.dataset_config}"
    try:
        local = storage.local_copy(config.data_dir)
    except storage.NotFound:
        local = None
    builder = tfds.builder(name, data_dir=str(local)) if local is not None else None
    if builder is not None and os.path.isdir(builder.data_dir):
        dataset_record.check_trainable(local / DATASET / config.dataset_config, config)
    if builder is None or not os.path.isdir(builder.data_dir) or not builder.info.splits:
        built = sorted(p.name for p in (local / DATASET / config.dataset_config).glob("*.*.*")
                       if p.is_dir()) if local is not None else []
        other = (f" (it holds builder version {', '.join(built)}; this code reads "
                 f"{builder.info.version})" if built and builder is not None else "")
        raise ConfigError(
            "data_dir", f"dataset {name} is not prepared in data_dir {config.data_dir!r}{other}; build it first: "
            f"covidct prepare --demo --config {config.dataset_config} --data-dir {config.data_dir} "
            "(or --manual-dir DIR for real scans)"
        )
    names = tuple(builder.info.features["label"].names)
    ids = selected_class_ids(config, names)
    labels = _with_split(builder, name, "train").as_dataset(
        split="train", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    per_class = np.bincount(np.fromiter(labels.map(lambda ex: ex["label"]).as_numpy_iterator(),
                                        np.int64), minlength=len(names))
    counts = {n: int(c) for i, (n, c) in enumerate(zip(names, per_class))
              if c and (ids is None or i in ids)}
    return Description(name, names, counts, builder)


def load_images(config: TrainConfig, split: str = "train",
                dataset: Description | None = None) -> tuple[tf.data.Dataset, int]:
    """The split's examples of the selected classes (`config.labels`), cached in memory, and how
    many there are: {"image": uint8 (H, W, 1), "label": int64 index into `class_names`}.
    `dataset`: the run's `describe(config)` (opened here if not given).

    Raises:
        ConfigError: the dataset is not prepared, or `labels` names a class it does not have.
    """
    dataset = dataset or describe(config)
    builder = dataset.builder_for(split)
    ids = selected_class_ids(config, dataset.class_names)
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=tfds.ReadConfig(
        shuffle_seed=0, interleave_cycle_length=1))
    ds = ds.map(lambda ex: {"image": ex["image"], "label": ex["label"]},
                num_parallel_calls=tf.data.AUTOTUNE)
    if ids is None:
        return ds.cache(), builder.info.splits[split].num_examples
    wanted = tf.constant(ids, tf.int64)
    ds = ds.filter(lambda ex: tf.reduce_any(tf.equal(ex["label"], wanted))).cache()
    if split == "train":
        return ds, dataset.train_images
    return ds, int(ds.reduce(0, lambda n, _: n + 1).numpy())


def selected_class_ids(config: TrainConfig, names: tuple[str, ...]) -> list[int] | None:
    """Indices of `config.labels` among the dataset's class `names` (None: every class)."""
    unknown = [n for n in config.label_names if n not in names]
    if unknown:
        raise ConfigError("labels", f"{unknown} not among the dataset's classes {list(names)}")
    return [names.index(n) for n in config.label_names] or None


def to_float(images: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], the generator's output range."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def epoch_seed(config: TrainConfig, epoch) -> tf.Tensor:
    """The seed of everything random in epoch `epoch` (a Python int or an int64 tensor)."""
    return tf.constant(config.seed * 1_000_003, tf.int64) + tf.cast(epoch, tf.int64)


def _stack(images: tf.data.Dataset) -> tuple[tf.Tensor, tf.Tensor]:
    """The whole (cached) training set as one (N, H, W, 1) uint8 tensor and its (N,) int32 class
    indices: a few hundred scans, at most ~140 MB at 336x504, so that each epoch can be a
    stateless permutation of it. A dataset of bare images gets class 0 throughout."""
    whole = images.batch(2**31 - 1).get_single_element()
    if isinstance(whole, dict):
        return whole["image"], tf.cast(whole["label"], tf.int32)
    return whole, tf.zeros(tf.shape(whole)[:1], tf.int32)


def _epoch(stack: tuple[tf.Tensor, tf.Tensor], config: TrainConfig, epoch) -> tf.data.Dataset:
    """One epoch's batches from the stacked images; `epoch` is a Python int or an int64 tensor.

    The order is a stateless permutation (seed, epoch): unlike `Dataset.shuffle`, it depends on no
    global seed, so the epochs of `run_batches` (built in a graph) equal `epoch_batches`.
    """
    pixels, labels = stack
    base = epoch_seed(config, epoch)
    latent = config.latent_dim
    order = tf.random.experimental.stateless_shuffle(
        tf.range(tf.shape(pixels, out_type=tf.int64)[0]), seed=tf.stack([base, SHUFFLE_SALT]))

    def add_randomness(index, i):
        seeds = tf.random.experimental.stateless_split(tf.stack([base, index]), num=3)
        drop = tf.random.experimental.stateless_split(
            tf.stack([base, index]) + tf.constant([0, DROPOUT_SALT], tf.int64), num=2)
        return {
            "image": to_float(tf.gather(pixels, i)),
            "label": tf.gather(labels, i),
            "z": tf.random.stateless_normal([latent], seed=seeds[0]),
            "aug_real": tf.random.stateless_uniform([AUG_PARAMS], seed=seeds[1]),
            "aug_fake": tf.random.stateless_uniform([AUG_PARAMS], seed=seeds[2]),
            # Seeds of D's dropout masks for this example's real and generated image.
            "dropout_real": drop[0],
            "dropout_fake": drop[1],
        }

    ds = tf.data.Dataset.from_tensor_slices(order).enumerate()
    ds = ds.map(add_randomness, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(config.global_batch_size, drop_remainder=True)


def epoch_batches(
    images: tf.data.Dataset, config: TrainConfig, epoch: int, skip_batches: int = 0
) -> tf.data.Dataset:
    """Epoch `epoch`'s global batches: {"image", "label", "z", "aug_real", "aug_fake",
    "dropout_real", "dropout_fake"}.

    Shuffled by a per-epoch permutation, batched with the global batch (remainder dropped: a
    short last batch would change the per-example loss scaling), prefetched.
    """
    return run_batches(images, config, epoch, skip_batches, epochs=epoch + 1)


def run_batches(
    images: tf.data.Dataset,
    config: TrainConfig,
    start_epoch: int,
    skip_batches: int = 0,
    epochs: int | None = None,
) -> tf.data.Dataset:
    """The batches of epochs `start_epoch` .. `epochs` (default: the config's) back to back, as
    one dataset; `skip_batches` of the first epoch are already done (a resumed run).

    One dataset for the whole run, because a distributed iterator is expensive to create (about
    0.7 s on a CPU: MirroredStrategy builds a multi-device iterator); one per epoch cost the demo
    run about a quarter of its time.
    """
    stack = _stack(images)
    first = _epoch(stack, config, start_epoch).skip(skip_batches)
    rest = tf.data.Dataset.range(start_epoch + 1, config.epochs if epochs is None else epochs)
    ds = first.concatenate(rest.flat_map(lambda epoch: _epoch(stack, config, epoch)))
    # Every worker of a multi-worker run builds this same dataset; the strategy splits each
    # global batch into per-replica slices and DATA sharding hands each worker its replicas'
    # slices, so the group trains on the batches one process would (AUTO tries files first).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def real_sample(images: tf.data.Dataset, n: int) -> np.ndarray:
    """Up to `n` real images in [-1, 1] as (N, H, W, 1) float32, in dataset order."""
    batch = next(iter(images.take(n).batch(n)))
    return to_float(batch["image"] if isinstance(batch, dict) else batch).numpy()


def load_holdout(config: TrainConfig, dataset: Description | None = None) -> np.ndarray:
    """The test split's images of the selected classes, in [-1, 1] (N, H, W, 1) float32."""
    images, is_covid = load_split(config, "test", dataset)
    if config.label_names and is_covid is not None and len(set(config.label_names)) == 1:
        images = images[is_covid if config.label_names[0] == COVID else ~is_covid]
    return images


def real_sample_labels(images: tf.data.Dataset, n: int) -> tf.Tensor:
    """The (N,) int32 classes of `real_sample`'s images (zeros for a dataset of bare images)."""
    batch = next(iter(images.take(n).batch(n)))
    if isinstance(batch, dict):
        return tf.cast(batch["label"], tf.int32)
    return tf.zeros(tf.shape(batch)[:1], tf.int32)


def grid_labels(class_ids: list[int], n: int) -> tf.Tensor:
    """Classes for an n-image sample grid: one class per row, cycling through `class_ids`."""
    cols = int(np.ceil(np.sqrt(n)))
    return tf.constant([class_ids[(i // cols) % len(class_ids)] for i in range(n)], tf.int32)


def fixed_noise(config: TrainConfig, n: int, salt: int = 0) -> tf.Tensor:
    """The same latent vectors for the whole run: sample grids and metrics compare like for like."""
    return tf.random.stateless_normal([n, config.latent_dim], seed=[config.seed, 7919 + salt])


def load_split(config: TrainConfig, split: str, dataset: Description | None = None,
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """All images of a split in [-1, 1] as (N, H, W, 1) float32, and is-covid flags (N,) bool
    (None if the dataset has no label feature with a covid class). `dataset`: as `load_images`."""
    builder = (dataset or describe(config)).builder_for(split)
    label = builder.info.features["label"] if "label" in builder.info.features.keys() else None
    names = list(getattr(label, "names", []) or [])
    images, labels = [], []
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
        images.append(example["image"])
        if COVID in names:
            labels.append(example["label"] == names.index(COVID))
    x = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return x, (np.asarray(labels, bool) if COVID in names else None)
