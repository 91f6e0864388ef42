"""What synthetic scans are worth to a COVID classifier, as an experiment with intervals.

Arms, each trained over `seeds` seeds and scored on the real test split (the builder's split by
patient / paper group: no patient, paper or copy of a scan is on both sides):

- `real`: the real training split alone;
- `real+classical`: plus one classically augmented copy of each training scan (left-right flip
  half the time, rotation up to 10 degrees, shift up to 10%, zoom up to 10%, brightness +-0.1 and
  contrast x0.9-1.1 of the [-1, 1] range): the baseline synthetic images must beat;
- `real+synthetic x r`: plus round(r * N) synthetic images with their classes, for each ratio r.

**Classifier and schedule**: `classifier.train_classifier` (3 strided 3x3 convs of 16/32/64
filters, global average pooling, one logit; Adam 1e-3, batch 32), `STEPS` batches in every arm,
so an arm with more images gets no more updates. Accuracy at p > 0.5 and AUC. Measured on the
real full set at 28x28 (662 training scans; test 74 covid, 40 non_covid, so always saying covid
scores 0.65): real only AUC 0.647 [0.543, 0.744], accuracy 0.614 [0.532, 0.698]; real +
classical AUC gain -0.016 [-0.061, 0.029], no gain; 900 batches instead of 300 gave AUC 0.66
(3 seeds). Synthetic images from a conditional seed28 run with LeCam (`bench/utility.py`): AUC
gain -0.054 [-0.124, 0.010] at x0.5 and -0.050 [-0.117, 0.017] at x1, no gain. At 28x28 this CNN
finds little of the class signal; 64x64 is the setting to use for a utility figure worth citing
(not measured yet).

**Intervals** (95%): a two-level bootstrap (`BOOTSTRAP` resamples of the seeds and, within each,
of the test scans; scans, not patients, since the test split carries no patient per scan) of the
mean over seeds, widened where needed to hold the t-interval over the seeds (n - 1 degrees of
freedom), and held within [0, 1] (a gain's within [-1, 1]): neither the test sample's noise
nor the seeds' is hidden. The gain of an arm over
`real` is the same interval of the paired per-seed difference (same seed, same test scans);
"gain" only when its lower end is above 0, so "no gain" is a possible answer.

`experiment` is the pure core (numpy in, dict out); `covidct evaluate --utility` and
`bench/utility.py` call it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import scipy.ndimage
import scipy.stats

from job.errors import UserError
from job.evaluation import classifier

SEEDS = 5
RATIOS = (0.5, 1.0)
STEPS = 300  # batches of 32 per arm: ~15 epochs of the 662 real training scans at 28x28
BOOTSTRAP = 2000
LEVEL = 0.95
MAX_ROTATION_DEG, MAX_SHIFT, MAX_ZOOM, MAX_BRIGHTNESS, MAX_CONTRAST = 10.0, 0.1, 0.1, 0.1, 0.1


def augment(images: np.ndarray, seed: int) -> np.ndarray:
    """One classically augmented copy of each (N, H, W, 1) image in [-1, 1] (see the module
    docstring for the ranges); black (-1) fills what a move uncovers."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    h, w = images.shape[1:3]
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    for i, x in enumerate(images[..., 0]):
        if rng.random() < 0.5:
            x = x[:, ::-1]
        angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
        zoom = rng.uniform(1 - MAX_ZOOM, 1 + MAX_ZOOM)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / zoom
        shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * (h, w)
        # affine_transform maps output coordinates to input ones: o -> rot @ o + offset.
        offset = centre - rot @ (centre + shift)
        x = scipy.ndimage.affine_transform(x, rot, offset, order=1, mode="constant", cval=-1.0)
        x = (x + 1) * rng.uniform(1 - MAX_CONTRAST, 1 + MAX_CONTRAST) - 1
        out[i, ..., 0] = np.clip(x + rng.uniform(-MAX_BRIGHTNESS, MAX_BRIGHTNESS), -1, 1)
    return out


def _scores(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy, AUC) of probabilities p (..., N) for labels y (..., N), vectorised over the
    leading axes (AUC by the Mann-Whitney U on ranks)."""
    accuracy = np.mean((p > 0.5) == y, axis=-1)
    ranks = scipy.stats.rankdata(p, axis=-1)
    pos = y.sum(axis=-1)
    neg = y.shape[-1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (np.sum(ranks * y, axis=-1) - pos * (pos + 1) / 2) / (pos * neg)
    return accuracy, auc


def interval(per_seed_test: np.ndarray, y: np.ndarray, *, seed: int = 0) -> dict[str, dict]:
    """{"accuracy", "auc"}: {"mean", "low", "high", "per_seed"} of the mean over seeds, from
    (S, N) covid probabilities of the N test scans (labels `y`) by S seeds' classifiers; or, for
    a paired gain, (2, S, N): an arm's and the reference's, the figures being arm minus reference.
    The interval stays within [0, 1] (a gain's within [-1, 1])."""
    paired = per_seed_test.ndim == 3
    arms = per_seed_test if paired else per_seed_test[None]
    s, n = arms.shape[1:]
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, s, (BOOTSTRAP, s))
    scans = rng.integers(0, n, (BOOTSTRAP, n))
    out = {}
    observed = [_scores(a, y[None]) for a in arms]  # per arm: (accuracy (S,), auc (S,))
    # (B, S, N) per arm: resample b's seeds and test scans, the same for both arms of a pair.
    resampled = [_scores(a[seeds[:, :, None], scans[:, None, :]], y[scans][:, None, :]) for a in arms]
    t = scipy.stats.t.ppf(0.5 + LEVEL / 2, s - 1) if s > 1 else math.inf
    for j, name in enumerate(("accuracy", "auc")):
        per_seed = observed[0][j] - (observed[1][j] if paired else 0)
        boot = np.nanmean(resampled[0][j] - (resampled[1][j] if paired else 0), axis=1)
        lo, hi = np.nanquantile(boot, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        mean = float(np.mean(per_seed))
        half = t * float(np.std(per_seed, ddof=1)) / math.sqrt(s) if s > 1 else math.inf
        # Held inside what the figure can be: with 2 seeds the t-interval alone spans beyond it.
        bounds = (-1.0, 1.0) if paired else (0.0, 1.0)
        out[name] = {"mean": mean, "low": float(max(bounds[0], min(lo, mean - half))),
                     "high": float(min(bounds[1], max(hi, mean + half))), "per_seed": per_seed.tolist()}
    return out


def experiment(
    train: np.ndarray,
    train_covid: np.ndarray,
    test: np.ndarray,
    test_covid: np.ndarray,
    synthetic: np.ndarray,
    synthetic_covid: np.ndarray,
    *,
    seeds: int = SEEDS,
    ratios: Sequence[float] = RATIOS,
    steps: int = STEPS,
) -> dict:
    """The arms (module docstring) on (N, H, W, 1) images in [-1, 1] with (N,) is-covid flags.

    Returns {"arms": {name: {"accuracy": interval, "auc": interval, "images": count}},
    "gain": {name: {"accuracy", "auc"}} for every arm but `real` (paired intervals),
    "settings": the seeds, ratios, steps, bootstrap, level and the test counts}.

    Raises:
        UserError: a class missing from the training or test split, fewer synthetic images than
            the largest ratio asks for, sizes that differ.
    """
    y = np.asarray(test_covid, bool)
    if not (classifier.has_both_classes(train_covid, test_covid)):
        raise UserError("utility needs covid and non_covid scans in both the training and test split")
    if synthetic.shape[1:] != train.shape[1:] or test.shape[1:] != train.shape[1:]:
        raise UserError(f"utility: image sizes differ: train {train.shape[1:3]}, test "
                        f"{test.shape[1:3]}, synthetic {synthetic.shape[1:3]}")
    counts = {r: int(round(r * len(train))) for r in ratios}
    if counts and max(counts.values()) > len(synthetic):
        raise UserError(f"utility: ratio {max(ratios):g} needs {max(counts.values())} synthetic images, "
                        f"got {len(synthetic)} (draw more with --n)")
    probabilities: dict[str, list[np.ndarray]] = {}
    sizes = {}
    for s in range(seeds):
        rng = np.random.default_rng(1000 + s)
        arms = {"real": (train, train_covid),
                "real+classical": (np.concatenate([train, augment(train, s)]),
                                   np.concatenate([train_covid, train_covid]))}
        for r, k in counts.items():
            pick = rng.choice(len(synthetic), k, replace=False)
            arms[f"real+synthetic x{r:g}"] = (np.concatenate([train, synthetic[pick]]),
                                               np.concatenate([train_covid, synthetic_covid[pick]]))
        for name, (x, labels) in arms.items():
            model = classifier.train_classifier(x, labels, seed=s, steps=steps)
            probabilities.setdefault(name, []).append(classifier.covid_probability(model, test))
            sizes[name] = len(x)
    p = {name: np.stack(v) for name, v in probabilities.items()}  # (S, N) each
    return {
        "arms": {name: {**interval(v, y), "images": sizes[name]} for name, v in p.items()},
        "gain": {name: interval(np.stack([v, p["real"]]), y) for name, v in p.items() if name != "real"},
        "settings": {"seeds": seeds, "ratios": list(ratios), "steps": steps, "bootstrap": BOOTSTRAP,
                     "level": LEVEL, "test": {"covid": int(y.sum()), "non_covid": int((~y).sum())}},
    }


def verdict(gain: dict) -> str:
    """"gain", "no gain" or "loss" from an AUC gain interval: its low end above 0, its high end
    below 0, or 0 inside."""
    auc = gain["auc"]
    return "gain" if auc["low"] > 0 else "loss" if auc["high"] < 0 else "no gain"


def markdown(result: dict) -> list[str]:
    """The report's table: each arm's accuracy and AUC with intervals, the gain over real."""
    st = result["settings"]
    lines = [f"Each arm trained {st['seeds']} times (seeds 0-{st['seeds'] - 1}, {st['steps']} "
             f"batches each) and scored on the real test split ({st['test']['covid']} covid, "
             f"{st['test']['non_covid']} non_covid scans, held out by patient/paper group). "
             f"[low, high]: {st['level']:.0%} interval, the wider of a two-level bootstrap "
             "(seeds, test scans) and the t-interval over seeds.", "",
             "| trained on | images | accuracy | AUC | AUC gain over real | |",
             "|---|---|---|---|---|---|"]
    fmt = lambda v: f"{v['mean']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"  # noqa: E731
    for name, arm in result["arms"].items():
        gain = result["gain"].get(name)
        lines.append(f"| {name} | {arm['images']} | {fmt(arm['accuracy'])} | {fmt(arm['auc'])} | "
                     + (f"{fmt(gain['auc'])} | {verdict(gain)} |" if gain else "- | reference |"))
    return lines
