"""Coverage, the one diversity figure (job/metrics/coverage.py): a generator of one pose fails it,
unseen real scans pass it, small moves and zooms of real scans do not change it much; the loop's
`diversity`, `evaluate`'s and the verdict's are the same number."""

import numpy as np
import pytest

from job import metrics
from job.errors import UserError
from job.evaluation import nearest, quality, verdict
from job.metrics import coverage
from tests.helpers import shifted


def _blobs(n, seed, size=28):
    """Bright blobs at random centres on black: a constructed set with varied 'poses'."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    c = rng.uniform(0.2, 0.8, size=(n, 2)) * size
    d2 = (yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2
    return (2 * np.exp(-d2 / (2 * (0.12 * size) ** 2)) - 1).astype(np.float32)[..., None]


def test_known_answers_and_refusals():
    real = _blobs(40, seed=0)
    assert coverage.coverage(real, real) == 1.0  # every real image is its own generated neighbour
    # One pose: only the real images whose ball holds that pose are covered.
    assert coverage.coverage(real, np.repeat(real[:1], 40, axis=0)) < 0.25
    # Brightness and contrast are intensity W1's business, not diversity's.
    assert coverage.coverage(real, 0.5 * real - 0.2) == 1.0
    assert coverage.radii(coverage.features(real[:2])).shape == (2,)  # k capped at M - 1
    with pytest.raises(UserError, match="at least 2 real"):
        coverage.coverage(real[:1], real)
    with pytest.raises(UserError, match="one size"):
        coverage.coverage(real, _blobs(4, seed=1, size=64))


@pytest.fixture(scope="module")
def split28(sample28):
    """The sample at 28x28: training scans cut in two (train, unseen), the test split as hold-out."""
    from job.config import TrainConfig
    from job.training import data

    config = TrainConfig(dataset_config="28", data_dir=sample28)
    train, holdout = data.load_split(config, "train")[0], data.load_split(config, "test")[0]
    order = np.random.default_rng(0).permutation(len(train))
    half = len(train) // 2
    return train[order[:half]], holdout, train[order[half:]]


def _diversity(train, holdout, generated, *, against_loop=False):
    """(evaluate's diversity ratio, whether the verdict passes it); with `against_loop`, checked
    to be the loop's figure (HeldOutScorer's `diversity`)."""
    q, section = quality.measure(train, holdout, generated, seed=0)
    memo = {"memorisation": False, "generated": 1, "flagged": 0, "p_value": 1.0,
            "expected_by_chance": 0.0, "exact_copies": 0}
    part = verdict.judge({"quality": q, "diversity": section, "memorisation": memo})[1]
    assert part["part"] == "diversity"
    if against_loop:
        assert section["diversity_ratio"] == metrics.HeldOutScorer(train, holdout, seed=0)(generated)["diversity"]
    return section["diversity_ratio"], part["ok"]


def test_one_pose_fails_unseen_real_scans_pass_and_small_moves_stay_close(split28):
    train, holdout, unseen = split28
    rng = np.random.default_rng(1)
    n = len(unseen)
    honest, honest_ok = _diversity(train, holdout, unseen, against_loop=True)
    assert honest_ok and honest > 0.8, honest
    # One real scan with pixel noise: one pose, however noisy.
    one = np.clip(np.repeat(unseen[:1], n, 0) + rng.normal(0, 0.1, (n, 28, 28, 1)), -1, 1)
    value, ok = _diversity(train, holdout, one.astype(np.float32))
    assert not ok and value < 0.4, value
    # The same scan moved by up to 3 px and zoomed up to 10%: still one pose.
    moved = np.concatenate([shifted(nearest.zoom(unseen[:1, ..., 0].astype(np.float64), z)[..., None],
                                    int(dy), int(dx))
                            for z, dy, dx in zip(rng.uniform(0.9, 1.1, n), rng.integers(-3, 4, n),
                                                 rng.integers(-3, 4, n))]).astype(np.float32)
    moved_value, ok = _diversity(train, holdout, moved)
    assert not ok and moved_value < 0.5, moved_value
    # Unseen scans each moved by a pixel, or zoomed 5%: the same poses, so they still pass, far
    # above one pose moved about (17 hold-out scans: each is 1/17 of the coverage, so the figure
    # moves in steps of ~0.07 and 1 px at 28 px is a third of a feature pixel).
    for variant in (shifted(unseen, 1, -1),
                    nearest.zoom(unseen[..., 0].astype(np.float64), 1.05)[..., None].astype(np.float32)):
        value, ok = _diversity(train, holdout, variant)
        assert ok and value > 1.5 * moved_value, (value, honest, moved_value)
