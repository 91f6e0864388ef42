"""The memorisation check on real scans (COVIDCT_SAMPLE_DIR, set by .ci/run): copies disguised by a
zoom, a shift or a mirror are caught; real unseen scans posing as generated raise no alarm; the
test's false-alarm rate is what it claims."""

import os

import numpy as np
import pytest
import scipy.stats

from job import config as C
from job.evaluation import memorisation, nearest
from job.training import data
from tests.helpers import shifted

SAMPLE = os.environ.get("COVIDCT_SAMPLE_DIR")
needs_sample = pytest.mark.skipif(not SAMPLE, reason="COVIDCT_SAMPLE_DIR is not set: no real scans")


@pytest.fixture(scope="module")
def real64(tmp_path_factory):
    """The sample's 64x64 train and test splits, in [-1, 1]."""
    from job.prepare import prepare

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    prepare("64", data_dir, manual_dir=SAMPLE)
    config = C.TrainConfig(dataset_config="64", data_dir=data_dir)
    return data.load_split(config, "train")[0], data.load_split(config, "test")[0]


def zoomed(images, factor):
    return nearest.zoom(images[..., 0].astype(np.float64), factor)[..., None]


@needs_sample
@pytest.mark.parametrize("name", ["zoom 1.04", "zoom 0.93", "shift 6 px", "shift 7 px",
                                  "mirrored", "mirrored, zoom 1.07, shift 4 px"])
def test_training_scans_zoomed_shifted_or_mirrored_are_flagged_and_called_memorised(real64, name):
    train, holdout = real64
    source = train[:40]
    copies = {
        "zoom 1.04": lambda: zoomed(source, 1.04),
        "zoom 0.93": lambda: zoomed(source, 0.93),
        "shift 6 px": lambda: np.concatenate([shifted(source[:20], 6, -6), shifted(source[20:], -6, 0)]),
        "shift 7 px": lambda: shifted(source, 7, 5),
        "mirrored": lambda: source[:, :, ::-1],
        "mirrored, zoom 1.07, shift 4 px": lambda: shifted(zoomed(source[:, :, ::-1], 1.07), 4, 2),
    }[name]()
    memo = memorisation.check(copies, train, holdout)
    assert memo.flagged.mean() >= 0.95, (name, memo.distance, memo.threshold)
    assert np.mean(memo.neighbour == np.arange(40)) >= 0.9
    assert memo.memorises and memo.summary()["p_value"] < 1e-6
    if name.startswith("mirrored"):
        assert memo.matches.mirrored.mean() >= 0.9


@needs_sample
def test_real_unseen_scans_as_generated_raise_no_alarm_in_95_percent_of_random_splits(real64):
    # Random splits of real scans: "generated" images are exactly as new as the hold-out, the
    # null hypothesis of the test. The old rule (alarm on any flag) fired in most splits.
    pool = np.concatenate(real64)
    alarms, any_flag, splits = 0, 0, 40
    for seed in range(splits):
        order = np.random.default_rng(seed).permutation(len(pool))
        train, holdout, generated = pool[order[:70]], pool[order[70:90]], pool[order[90:]]
        memo = memorisation.check(generated, train, holdout)
        alarms += memo.memorises
        any_flag += bool(memo.flagged.any())
    assert alarms <= 0.05 * splits, (alarms, any_flag)
    assert any_flag > alarms  # chance flags happen; the test does not call them memorisation


def test_the_beta_binomial_test_holds_its_level_where_a_binomial_one_does_not():
    # Under the null, each generated distance is one more draw among the M hold-out ones: the
    # number below the hold-out minimum is BetaBinomial(n, 1, M), not Binomial(n, 1/(M+1)).
    rng = np.random.default_rng(0)
    n, m, trials = 1000, 85, 4000
    holdout_min = rng.uniform(size=(trials, m)).min(axis=1)
    flagged = rng.binomial(n, holdout_min)
    p = np.array([memorisation.chance_p_value(k, n, m) for k in flagged])
    assert np.mean(p < memorisation.ALPHA) <= 1.5 * memorisation.ALPHA
    binomial_p = scipy.stats.binom.sf(flagged - 1, n, 1 / (m + 1))
    assert np.mean(binomial_p < memorisation.ALPHA) > 0.1  # a fixed-threshold test cries wolf
    assert memorisation.chance_p_value(0, n, m) == 1.0
    assert memorisation.detectable_share(85) == pytest.approx(0.053, abs=1e-3)
    assert memorisation.detectable_share(17) == pytest.approx(0.237, abs=1e-3)


def test_a_copier_above_the_detectable_share_is_caught_and_a_small_one_is_not_claimed():
    m = 40
    share = memorisation.detectable_share(m)
    assert memorisation.chance_p_value(int(2 * share * 1000), 1000, m) < memorisation.ALPHA
    assert memorisation.chance_p_value(int(1000 / (m + 1)), 1000, m) > 0.3  # chance level
