"""Class fidelity and utility: a tiny CNN probes whether the covid / non_covid signal is there.

Trained on the real training split and scored on the real hold-out, it says how separable the
classes are (its accuracy is what makes its other figures readable); the share of generated
images it calls covid, and classifiers trained with synthetic images, say what a synthetic set
carries. Small on purpose: a probe, not a diagnostic model. Seconds on a CPU.
"""

from __future__ import annotations

import math

import numpy as np

from job.errors import UserError
from job.metrics.arrays import reduce

CLASSIFIER_SIDE = 64  # classifiers see images area-averaged to at most 64 px (fast on a CPU)
CLASSIFIER_EPOCHS = 15
CLASSIFIER_BATCH = 32
# At least this many gradient steps, whatever the set's size: 15 epochs of the demo's 85 scans are
# 45 steps, too few for the probe to learn the phantoms' class difference (it then called 42% of
# unseen covid phantoms covid; at 120+ steps, 83-92%).
CLASSIFIER_MIN_STEPS = 150

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
    return reduce(x, CLASSIFIER_SIDE)[..., None].astype(np.float32)


def train_classifier(
    images: np.ndarray, is_covid: np.ndarray, *, seed: int = 0, epochs: int = CLASSIFIER_EPOCHS,
    steps: int | None = None,
):
    """A tiny CNN (3 strided convs, ~25k weights) for covid vs non_covid; seconds on a CPU.

    Small on purpose: it is a probe of whether the class signal is there, not a diagnostic model.
    Trains `epochs`, or more on a small set to reach CLASSIFIER_MIN_STEPS batches; with `steps`,
    about that many batches whatever the set's size (whole epochs, rounded up).
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
    steps_per_epoch = math.ceil(len(x) / CLASSIFIER_BATCH)
    epochs = (math.ceil(steps / steps_per_epoch) if steps else
              max(epochs, math.ceil(CLASSIFIER_MIN_STEPS / steps_per_epoch)))
    model.fit(x, y, batch_size=CLASSIFIER_BATCH, epochs=epochs, shuffle=True, verbose=0)
    return model


def covid_probability(model, images: np.ndarray) -> np.ndarray:
    logits = model.predict(_classifier_input(images), batch_size=256, verbose=0)[:, 0]
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def _scores_of(p: np.ndarray, is_covid: np.ndarray) -> dict[str, float | None]:
    return {"accuracy": float(np.mean((p > 0.5) == np.asarray(is_covid, bool))), "auc": auc(is_covid, p)}


def class_fidelity(train, train_covid, holdout, holdout_covid, generated, *, seed: int = 0):
    """(results, probabilities): a classifier trained on real train, scored on the real hold-out,
    and the share of generated images it calls covid (compare with the real training share);
    probabilities = {"holdout_p", "generated_p"}, its (N,) covid probability of each image."""
    model = train_classifier(train, train_covid, seed=seed)
    holdout_p, generated_p = covid_probability(model, holdout), covid_probability(model, generated)
    results = {
        **{f"holdout_{k}": v for k, v in _scores_of(holdout_p, holdout_covid).items()},
        "generated_covid_share": float(np.mean(generated_p > 0.5)),
        "train_covid_share": float(np.mean(train_covid)),
    }
    return results, {"holdout_p": holdout_p, "generated_p": generated_p}


def has_both_classes(*labels: np.ndarray | None) -> bool:
    return all(y is not None and len(np.unique(y)) == 2 for y in labels)

