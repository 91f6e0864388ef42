"""`covidct evaluate`: is a checkpoint's output like the scans, varied, and not a copy of any?

    covidct evaluate --run runs/demo --checkpoint best --n 1000 --out reports/demo

About a minute on 2 CPU cores for 1000 images at 64x64 (memorisation ~2 s, SWD ~10 s); class
fidelity trains a tiny CNN for a few seconds more; `--utility` trains three.

`evaluate` is the I/O edge: it loads the run's config, EMA generator and real splits
(`train` = what the generator saw, `test` = the real hold-out), then hands numpy arrays to
`evaluate_arrays`, the pure core that tests drive with constructed cases, and writes the report
(job.report) to a folder or gs:// through job.storage.

Every comparison against real data is made with equal image counts (the smallest of the three
sets), so the hold-out -> train figures are a fair floor: a generator cannot do better than real
scans that it never saw.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pathlib
import tempfile
from typing import Any, Callable

import numpy as np

from job import memorisation, metrics, storage
from job.errors import UserError

log = logging.getLogger("covidct")

COVID = "covid"
CLASSIFIER_SIDE = 64  # classifiers see images area-averaged to at most 64 px (fast on a CPU)
CLASSIFIER_EPOCHS = 15
CLASSIFIER_BATCH = 32


# --------------------------------------------------------------------------- quality


def _subsample(images: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    return images if len(images) == m else images[np.sort(rng.choice(len(images), m, replace=False))]


def quality(
    train: np.ndarray,
    holdout: np.ndarray,
    generated: np.ndarray,
    *,
    seed: int = 0,
    extractor: Callable[[Any], np.ndarray] | None = None,
) -> dict[str, Any]:
    """SWD (and FID/KID with an extractor) of generated vs train, vs hold-out, and the real floor.

    All sets are cut to the same count m (SWD and FID are biased by sample size, so unequal
    counts would make the floor unfair); `images_per_set` records m.
    """
    m = min(len(train), len(holdout), len(generated))
    if m < 2:
        raise UserError(f"quality needs at least 2 images per set, got train/hold-out/generated "
                        f"{len(train)}/{len(holdout)}/{len(generated)}")
    rng = np.random.default_rng(seed)
    tr, ho, ge = (_subsample(x, m, rng) for x in (train, holdout, generated))
    out: dict[str, Any] = {
        "images_per_set": m,
        "swd_generated_vs_train": metrics.swd(tr, ge, seed=seed),
        "swd_generated_vs_holdout": metrics.swd(ho, ge, seed=seed),
        "swd_holdout_vs_train": metrics.swd(tr, ho, seed=seed),
    }
    if extractor is not None:
        f_tr, f_ho, f_ge = extractor(tr), extractor(ho), extractor(ge)
        for name, (a, b) in {"generated_vs_train": (f_tr, f_ge), "generated_vs_holdout": (f_ho, f_ge),
                             "holdout_vs_train": (f_tr, f_ho)}.items():
            out[f"fid_{name}"] = metrics.fid_from_features(a, b)
            out[f"kid_{name}"] = metrics.kid(a, b, seed=seed)
    return out


def diversity(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """Mean pairwise distance among generated and among real images, and their ratio.

    A ratio near 1 means the generator varies as much as the scans; near 0 means mode collapse.
    """
    real_value, generated_value = metrics.diversity(real), metrics.diversity(generated)
    ratio = generated_value / real_value if real_value > 0 else float("nan")
    return {"diversity_generated": generated_value, "diversity_real": real_value, "diversity_ratio": ratio}


# --------------------------------------------------------------------------- classifiers


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied ranks); None with a single class."""
    import scipy.stats

    labels = np.asarray(labels).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = scipy.stats.rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _classifier_input(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, np.float64)
    if x.ndim == 4:
        x = x[..., 0]
    return memorisation.reduce(x, CLASSIFIER_SIDE)[..., None].astype(np.float32)


def train_classifier(
    images: np.ndarray, is_covid: np.ndarray, *, seed: int = 0, epochs: int = CLASSIFIER_EPOCHS
):
    """A tiny CNN (3 strided convs, ~25k weights) for covid vs non_covid; seconds on a CPU.

    Small on purpose: it is a probe of whether the class signal is there, not a diagnostic model.
    """
    import keras

    x = _classifier_input(images)
    y = np.asarray(is_covid, np.float32)
    if len(np.unique(y)) < 2:
        raise UserError("a covid vs non_covid classifier needs images of both classes")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(x.shape[1:]),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=CLASSIFIER_BATCH, epochs=epochs, shuffle=True, verbose=0)
    return model


def covid_probability(model, images: np.ndarray) -> np.ndarray:
    logits = model.predict(_classifier_input(images), batch_size=256, verbose=0)[:, 0]
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def _scores(model, images: np.ndarray, is_covid: np.ndarray) -> dict[str, float | None]:
    p = covid_probability(model, images)
    return {"accuracy": float(np.mean((p > 0.5) == np.asarray(is_covid, bool))), "auc": auc(is_covid, p)}


def class_fidelity(train, train_covid, holdout, holdout_covid, generated, *, seed: int = 0):
    """(results, model): a classifier trained on real train, scored on the real hold-out, and
    the share of generated images it calls covid (compare with the real training share)."""
    model = train_classifier(train, train_covid, seed=seed)
    p = covid_probability(model, generated)
    results = {
        **{f"holdout_{k}": v for k, v in _scores(model, holdout, holdout_covid).items()},
        "generated_covid_share": float(np.mean(p > 0.5)),
        "train_covid_share": float(np.mean(train_covid)),
    }
    return results, model


def utility(train, train_covid, holdout, holdout_covid, generated, generated_covid, *, seed: int = 0):
    """Hold-out accuracy/AUC of classifiers trained on real, real + synthetic and synthetic only.

    The generator is unconditional, so synthetic images carry the labels the real-trained
    classifier gives them (`generated_covid`); with a single pseudo-class the synthetic-only
    classifier cannot be trained and is reported as None.
    """
    sets = {
        "real": (train, train_covid),
        "real_plus_synthetic": (np.concatenate([train, generated]),
                                np.concatenate([train_covid, generated_covid])),
        "synthetic": (generated, generated_covid),
    }
    out = {}
    for name, (x, y) in sets.items():
        if len(np.unique(y)) < 2:
            out[name] = None
            continue
        out[name] = _scores(train_classifier(x, y, seed=seed), holdout, holdout_covid)
    return out


def has_both_classes(*labels: np.ndarray | None) -> bool:
    return all(y is not None and len(np.unique(y)) == 2 for y in labels)


# --------------------------------------------------------------------------- the core


def evaluate_arrays(
    train: np.ndarray,
    holdout: np.ndarray,
    generated: np.ndarray,
    *,
    train_covid: np.ndarray | None = None,
    holdout_covid: np.ndarray | None = None,
    seed: int = 0,
    extractor: Callable[[Any], np.ndarray] | None = None,
    with_utility: bool = False,
) -> tuple[dict[str, Any], memorisation.Memorisation]:
    """Every figure of the report from arrays in [-1, 1] (N, H, W, 1); (results, memorisation).

    `*_covid` are booleans (True = covid); class fidelity runs when both splits hold both classes.
    """
    shapes = {np.shape(x)[1:] for x in (train, holdout, generated)}
    if len(shapes) > 1:
        raise UserError(f"train, hold-out and generated images differ in shape: {sorted(shapes)}")
    memo = memorisation.check(generated, train, holdout)
    results: dict[str, Any] = {
        "counts": {"train": len(train), "holdout": len(holdout), "generated": len(generated)},
        "quality": quality(train, holdout, generated, seed=seed, extractor=extractor),
        "diversity": diversity(_subsample(train, min(len(train), len(generated)),
                                          np.random.default_rng(seed)), generated),
        "memorisation": memo.summary(),
        "class_fidelity": None,
        "utility": None,
    }
    if has_both_classes(train_covid, holdout_covid):
        fidelity, model = class_fidelity(train, train_covid, holdout, holdout_covid, generated, seed=seed)
        results["class_fidelity"] = fidelity
        if with_utility:
            pseudo = covid_probability(model, generated) > 0.5
            results["utility"] = utility(train, train_covid, holdout, holdout_covid, generated,
                                         pseudo, seed=seed)
    elif with_utility:
        raise UserError("--utility needs a dataset whose train and test splits hold both covid "
                        "and non_covid scans")
    return results, memo


# --------------------------------------------------------------------------- the I/O edge


def load_split(config, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """All images of a split of the run's dataset in [-1, 1], and is-covid flags (None if the
    dataset has no usable label feature)."""
    import tensorflow_datasets as tfds

    from job import data

    data.load_images(config, split)  # the checks and messages for a missing dataset or split
    builder = tfds.builder(f"{data.DATASET}/{config.dataset_config}",
                           data_dir=data.local_data_dir(config.data_dir))
    features = builder.info.features
    label = features["label"] if "label" in features.keys() else None
    names = list(getattr(label, "names", []) or [])
    images, labels = [], []
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
        images.append(example["image"])
        if COVID in names:
            labels.append(example["label"] == names.index(COVID))
    x = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return x, (np.asarray(labels, bool) if COVID in names else None)


@contextlib.contextmanager
def staged_output(out: str):
    """A local folder to write into; for gs:// it is uploaded to `out` when the block ends."""
    if not storage.is_remote(out):
        path = pathlib.Path(out)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="covidct-out-") as tmp:
        yield pathlib.Path(tmp)
        storage.upload_dir(tmp, out)


def inception_extractor(weights: str):
    """InceptionFeatures for a weights file, staging a gs:// file to local disk first."""
    if not weights:
        return None
    if storage.is_remote(weights):
        key = hashlib.sha256(weights.encode()).hexdigest()[:16]
        local = pathlib.Path(tempfile.gettempdir()) / "covidct-inception" / key
        local = local / pathlib.PurePosixPath(weights).name
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(storage.read_bytes(weights))
        weights = str(local)
    return metrics.InceptionFeatures(weights)


def evaluate(
    run_uri: str,
    out: str,
    checkpoint: str = "latest",
    n: int = 1000,
    seed: int = 0,
    inception_weights: str = "",
    utility: bool = False,
) -> dict[str, Any]:
    """Generate `n` images from `run_uri` at `checkpoint`, evaluate them, write the report to
    `out` (folder or gs://); returns the report's JSON content."""
    from job import report
    from job.generate import generate_images, load_generator

    if n < 2:
        raise UserError(f"--n must be at least 2, got {n}")
    extractor = inception_extractor(inception_weights)  # fail on a bad file before any work
    generator, config, epoch = load_generator(run_uri, checkpoint)
    train, train_covid = load_split(config, "train")
    holdout, holdout_covid = load_split(config, "test")
    generated = generate_images(generator, config, n, seed)
    log.info(f"evaluating {n} images of {run_uri} (epoch {epoch}) against {len(train)} train and "
             f"{len(holdout)} hold-out scans")
    results, memo = evaluate_arrays(
        train, holdout, generated, train_covid=train_covid, holdout_covid=holdout_covid,
        seed=seed, extractor=extractor, with_utility=utility)
    results["run"] = {"uri": run_uri, "checkpoint": checkpoint, "epoch": epoch, "seed": seed,
                      "dataset": f"covid_ct/{config.dataset_config}", "data_dir": config.data_dir,
                      "inception_weights": inception_weights}
    with staged_output(out) as folder:
        doc = report.write(folder, results, memo, train=train, generated=generated)
    log.info(doc["verdict"])
    return doc
