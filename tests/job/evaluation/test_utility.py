"""Utility as an experiment (job/evaluation/utility.py): noise or swapped classes added to real
scans show no gain; the intervals hold the spread of the seeds; classical augmentation keeps
its labels and its images in range."""

import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import scipy.stats

from job.errors import UserError
from job.evaluation import utility


def _scans(n, seed, size=28):
    """Smoothed-noise 'scans' whose covid half carries a bright blob left of centre: a class
    signal a tiny CNN learns from ~100 images, not perfectly."""
    rng = np.random.default_rng(seed)
    x = scipy.ndimage.gaussian_filter(rng.standard_normal((n, size, size)), (0, 1.5, 1.5))
    x = x / np.abs(x).max(axis=(1, 2), keepdims=True)
    covid = rng.random(n) < 0.5
    yy, xx = np.mgrid[0:size, 0:size]
    blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 3) ** 2) / (2 * (size / 8) ** 2))
    x = np.clip(x + 0.6 * covid[:, None, None] * blob, -1, 1)
    return x[..., None].astype(np.float32), covid


def test_the_interval_holds_the_seeds_t_interval_and_the_gain_is_paired():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.5
    # 5 seeds' probabilities: a shared signal plus a per-seed shift (training randomness).
    p = np.stack([scipy.special.expit(2.0 * (y - 0.5) + rng.normal(0, 1, 200) + rng.normal(0, 0.4))
                  for _ in range(5)])
    out = utility.interval(p, y)
    for name in ("accuracy", "auc"):
        v = np.array(out[name]["per_seed"])
        half = scipy.stats.t.ppf(0.975, 4) * v.std(ddof=1) / math.sqrt(5)
        assert out[name]["low"] <= v.mean() - half + 1e-12 and out[name]["high"] >= v.mean() + half - 1e-12
        assert out[name]["mean"] == pytest.approx(v.mean())
        assert out[name]["low"] < out[name]["mean"] < out[name]["high"]
    # An arm against itself gains exactly nothing, with a zero-width interval.
    same = utility.interval(np.stack([p, p]), y)
    assert same["auc"] == {"mean": 0.0, "low": 0.0, "high": 0.0, "per_seed": [0.0] * 5}
    assert utility.verdict(same) == "no gain"


def test_an_interval_never_leaves_the_range_of_its_figure():
    # Two seeds far apart: the t-interval (12.7 standard errors) alone would pass 0 and 1.
    y = np.arange(40) % 2 == 0
    p = np.stack([np.where(y, 0.9, 0.1), np.where(y, 0.1, 0.9)])  # all right, all wrong
    out = utility.interval(p, y)
    for name in ("accuracy", "auc"):
        assert out[name]["low"] == 0.0 and out[name]["high"] == 1.0 and out[name]["mean"] == 0.5
    gain = utility.interval(np.stack([p, p[::-1]]), y)  # +1 on one seed, -1 on the other
    assert gain["auc"]["low"] == -1.0 and gain["auc"]["high"] == 1.0


def test_augment_keeps_range_and_changes_each_image():
    x, _ = _scans(8, seed=0)
    a = utility.augment(x, seed=1)
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert all(np.abs(a[i] - x[i]).mean() > 0.01 for i in range(8))
    assert np.array_equal(a, utility.augment(x, seed=1))


@pytest.mark.heavy
def test_noise_or_swapped_classes_show_no_gain():
    train, train_covid = _scans(120, seed=1)
    test, test_covid = _scans(80, seed=2)
    options = dict(seeds=5, ratios=(1.0,), steps=60)
    noise = np.random.default_rng(3).uniform(-1, 1, train.shape).astype(np.float32)
    result = utility.experiment(train, train_covid, test, test_covid, noise, train_covid, **options)
    assert set(result["arms"]) == {"real", "real+classical", "real+synthetic x1"}
    real = result["arms"]["real"]
    assert real["auc"]["mean"] > 0.75, real  # the class signal is learnt from real scans alone
    assert result["arms"]["real+synthetic x1"]["images"] == 240
    assert utility.verdict(result["gain"]["real+synthetic x1"]) != "gain", result["gain"]
    # Unseen scans of each class drawn as the other: what a generator ignoring its class gives.
    swapped, swapped_covid = _scans(120, seed=4)
    result = utility.experiment(train, train_covid, test, test_covid, swapped, ~swapped_covid,
                                **{**options, "seeds": 3})
    gain = result["gain"]["real+synthetic x1"]
    assert utility.verdict(gain) == "loss" and gain["auc"]["high"] < 0, gain
    with pytest.raises(UserError, match="needs 240 synthetic"):
        utility.experiment(train, train_covid, test, test_covid, noise, train_covid, ratios=(2.0,))
