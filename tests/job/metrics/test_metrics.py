"""Quality metrics (job/metrics/): known answers for SWD, FID, KID, D accuracy and the registry.

Coverage (the diversity figure) has its own file, test_coverage.py."""

import numpy as np
import pytest
import scipy.linalg

from job import metrics
from job.errors import UserError


def _blobs(n, h, w, width, seed):
    """Bright Gaussian blobs at random centres on black, in [-1, 1]: a stand-in 'structured' set."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    centres = rng.uniform(0.3, 0.7, size=(n, 2)) * (h, w)
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    return (2 * np.exp(-d2 / (2 * (width * h) ** 2)) - 1).astype(np.float32)[..., None]


def _noise(n, h, w, seed):
    return np.random.default_rng(seed).uniform(-1, 1, (n, h, w, 1)).astype(np.float32)


# --------------------------------------------------------------------------- SWD


def test_swd_of_identical_sets_is_zero():
    real = _blobs(16, 28, 28, 0.15, seed=0)
    assert metrics.swd(real, real.copy()) == pytest.approx(0.0, abs=1e-9)


def test_swd_is_ordered_by_how_far_the_distribution_is():
    real = _blobs(64, 32, 32, 0.15, seed=0)
    same_distribution = _blobs(64, 32, 32, 0.15, seed=1)
    wider_blobs = _blobs(64, 32, 32, 0.3, seed=2)
    noise = _noise(64, 32, 32, seed=3)
    d_same, d_wider, d_noise = (metrics.swd(real, x) for x in (same_distribution, wider_blobs, noise))
    assert d_same < d_wider < d_noise
    assert d_noise > 10 * d_same  # noise vs structure is large, not a rounding difference


def test_swd_is_deterministic_per_seed():
    real, fake = _blobs(16, 28, 28, 0.15, seed=0), _blobs(16, 28, 28, 0.2, seed=1)
    assert metrics.swd(real, fake, seed=5) == metrics.swd(real, fake, seed=5)
    assert metrics.swd(real, fake, seed=5) != metrics.swd(real, fake, seed=6)


@pytest.mark.parametrize(
    "shape, levels",
    [((28, 28), [(28, 28)]), ((64, 64), [(64, 64), (32, 32), (16, 16)]),
     ((336, 504), [(336, 504), (168, 252), (84, 126), (42, 63), (21, 32)])],
)
def test_swd_levels_from_28_to_336x504_with_16_images(shape, levels):
    assert metrics.swd_level_shapes(*shape) == levels
    real, fake = _blobs(16, *shape, 0.15, seed=0), _noise(16, *shape, seed=1)
    values = metrics.swd_levels(real, fake)
    assert len(values) == len(levels)
    assert all(np.isfinite(v) and v > 0 for v in values)
    assert metrics.swd(real, fake) == pytest.approx(np.mean(values))


def test_swd_of_constant_images_is_finite():
    # A collapsed generator that draws one flat image must give a number, not NaN.
    flat = np.zeros((16, 28, 28, 1), np.float32)
    assert metrics.swd(flat, flat) == 0.0
    assert np.isfinite(metrics.swd(_blobs(16, 28, 28, 0.15, seed=0), flat))


def test_swd_with_different_counts_samples_every_image():
    real = _blobs(16, 28, 28, 0.15, seed=0)
    assert np.isfinite(metrics.swd(real, _blobs(24, 28, 28, 0.15, seed=1)))
    # The 8 extra noise images must be seen: they are all that differs from `real`.
    with_noise = np.concatenate([real, _noise(8, 28, 28, seed=2)])
    assert metrics.swd(real, with_noise) > 50


@pytest.mark.parametrize(
    "real, fake, match",
    [
        (np.zeros((4, 28, 28, 1)), np.zeros((4, 32, 32, 1)), "one size"),
        (np.zeros((4, 5, 5, 1)), np.zeros((4, 5, 5, 1)), "at least 7x7"),
        (np.zeros((4, 28, 28, 3)), np.zeros((4, 28, 28, 3)), r"\(N, H, W, 1\)"),
        (np.full((4, 28, 28, 1), np.nan), np.zeros((4, 28, 28, 1)), "NaN"),
    ],
)
def test_swd_rejects_bad_input(real, fake, match):
    with pytest.raises(UserError, match=match):
        metrics.swd(real, fake)


# --------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_1d_closed_form():
    # N(0, 1) vs N(3, 4): (0 - 3)^2 + (1 - 2)^2 = 10 (sigma is the variance).
    assert metrics.frechet_distance(0.0, 1.0, 3.0, 4.0) == pytest.approx(10.0)


def test_frechet_distance_diagonal_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    got = metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected)  # 5 + 1 + 0 + 4 = 10


def test_frechet_distance_scaled_covariance_and_general_case():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    sigma = a @ a.T + 0.1 * np.eye(6)
    mu = rng.standard_normal(6)
    # sigma2 = c^2 sigma1 -> Tr(sigma (1 + c^2 - 2c)) = (1 - c)^2 Tr(sigma).
    assert metrics.frechet_distance(mu, sigma, mu, 9 * sigma) == pytest.approx(4 * np.trace(sigma))
    # Two unrelated covariances: compare with the textbook formula through scipy's sqrtm.
    b = rng.standard_normal((6, 6))
    sigma2 = b @ b.T + 0.1 * np.eye(6)
    mu2 = rng.standard_normal(6)
    textbook = (
        np.sum((mu - mu2) ** 2)
        + np.trace(sigma + sigma2 - 2 * np.real(scipy.linalg.sqrtm(sigma @ sigma2)))
    )
    assert metrics.frechet_distance(mu, sigma, mu2, sigma2) == pytest.approx(textbook, rel=1e-6)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(UserError, match="shapes"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_fid_from_features_known_answers():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((200, 8))
    assert metrics.fid_from_features(f, f.copy()) == pytest.approx(0.0, abs=1e-8)
    shift = np.arange(8.0) / 4
    # A pure shift keeps the covariance: FID is exactly |shift|^2.
    assert metrics.fid_from_features(f, f + shift) == pytest.approx(np.sum(shift**2))
    # Two large samples of N(0, I) and N(0, 4 I) in 8-D: FID near 8 * (1 - 2)^2 = 8.
    g = 2 * rng.standard_normal((20000, 8))
    h = rng.standard_normal((20000, 8))
    assert metrics.fid_from_features(h, g) == pytest.approx(8.0, rel=0.05)


def test_fid_with_fewer_samples_than_dimensions_stays_real():
    # Singular covariances (N < D), as with a few hundred images and 2048 Inception features.
    rng = np.random.default_rng(0)
    f1, f2 = rng.standard_normal((20, 64)), rng.standard_normal((20, 64))
    value = metrics.fid_from_features(f1, f2)
    assert np.isfinite(value) and value > 0


# --------------------------------------------------------------------------- KID


def _naive_unbiased_mmd2(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_the_unbiased_mmd_estimator():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 5)) + 0.3
    # One subset of all samples: the estimate is the full-sample MMD^2 (order does not matter).
    got = metrics.kid(x, y, subsets=1, subset_size=12, seed=0)
    assert got == pytest.approx(_naive_unbiased_mmd2(x, y))


def test_kid_near_zero_for_one_distribution_and_larger_when_shifted():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((400, 16)), rng.standard_normal((400, 16))
    same = metrics.kid(a, b, subsets=20, subset_size=200, seed=0)
    small_shift = metrics.kid(a, b + 0.25, subsets=20, subset_size=200, seed=0)
    big_shift = metrics.kid(a, b + 1.0, subsets=20, subset_size=200, seed=0)
    assert abs(same) < 0.01
    assert small_shift > 0.02
    assert big_shift > 10 * small_shift
    assert metrics.kid(a, b, subsets=5, subset_size=50, seed=3) == metrics.kid(
        a, b, subsets=5, subset_size=50, seed=3
    )


def test_kid_rejects_bad_arguments():
    f = np.zeros((10, 4))
    with pytest.raises(UserError, match="subset_size"):
        metrics.kid(f, f, subsets=1, subset_size=1, seed=0)
    with pytest.raises(UserError, match="feature sizes"):
        metrics.kid(f, np.zeros((10, 5)), subsets=1, subset_size=5, seed=0)


# --------------------------------------------------------------------------- D accuracy


def test_d_accuracy_real():
    assert metrics.d_accuracy_real(np.array([[-1.0], [2.0], [3.0], [-0.5]])) == 0.5
    assert metrics.d_accuracy_real([5.0, 4.0]) == 1.0
    with pytest.raises(UserError):
        metrics.d_accuracy_real([])


# --------------------------------------------------------------------------- registry


def test_compute_by_name():
    real, fake = _blobs(16, 32, 32, 0.15, seed=0), _blobs(16, 32, 32, 0.3, seed=1)
    out = metrics.compute(["swd", "coverage"], real, fake, seed=0)
    assert set(out) == {"swd", "swd_32x32", "swd_16x16", "coverage"}
    assert out["swd"] == pytest.approx(metrics.swd(real, fake, seed=0))
    assert out["coverage"] == pytest.approx(metrics.coverage.coverage(real, fake))


def test_compute_fid_kid_with_any_feature_extractor():
    # The extractor is any images -> (N, D) function; pixels at 8x8 stand in for Inception here.
    def pixel_features(images):
        return np.asarray(images)[:, ::4, ::4, 0].reshape(len(images), -1)

    real = _blobs(40, 32, 32, 0.15, seed=0)
    same = metrics.compute(["fid_kid"], real, real, extractor=pixel_features)
    far = metrics.compute(["fid_kid"], real, _noise(40, 32, 32, seed=1), extractor=pixel_features)
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    assert far["fid"] > 10.0
    # KID draws independent subsets from each side, so identical sets give ~0, not exactly 0.
    assert abs(same["kid"]) < far["kid"] / 20


def test_compute_errors_name_the_problem():
    x = _blobs(4, 28, 28, 0.15, seed=0)
    with pytest.raises(UserError, match="unknown metric"):
        metrics.compute(["swd", "is"], x, x)
    with pytest.raises(UserError, match="inception_weights"):
        metrics.compute(["fid_kid"], x, x)


# --------------------------------------------------------------------------- Inception features


@pytest.mark.parametrize(
    "spec, match", [("", "imagenet"), ("gs://bucket/inception.h5", "local disk"), ("nope.h5", "no such file")]
)
def test_inception_weights_spec_is_checked_before_building(spec, match):
    with pytest.raises(UserError, match=match):
        metrics.InceptionFeatures(spec)


@pytest.mark.heavy
def test_inception_features_load_a_weights_file(tmp_path):
    import keras

    source = keras.applications.InceptionV3(
        weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3)
    )
    path = tmp_path / "inception.weights.h5"
    source.save_weights(str(path))

    extractor = metrics.InceptionFeatures(str(path), batch_size=2)
    feats = extractor(_blobs(3, 40, 60, 0.15, seed=0))
    assert feats.shape == (3, 2048)
    assert np.all(np.isfinite(feats))
    # A constant image resizes to a constant 299x299x3 input, so the loaded network must give
    # exactly what the saved one gives (a fresh random init would not).
    loaded = extractor(np.zeros((1, 28, 28, 1), np.float32))
    expected = source.predict_on_batch(np.zeros((1, 299, 299, 3), np.float32))
    np.testing.assert_allclose(loaded, expected, rtol=1e-4, atol=1e-5)

    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not an h5 file")
    with pytest.raises(UserError, match="could not load"):
        metrics.InceptionFeatures(str(garbage))(np.zeros((1, 28, 28, 1), np.float32))


# --------------------------------------------------------------------------- against the hold-out

@pytest.fixture(scope="module")
def real28(sample28):
    """Every scan of the real sample at 28x28 (train and test), in [-1, 1]."""
    from job import config as C
    from job.training import data

    config = C.TrainConfig(dataset_config="28", data_dir=sample28)
    return np.concatenate([data.load_split(config, s)[0] for s in ("train", "test")])


def test_a_too_dark_generator_scores_badly_on_intensity_though_its_swd_is_near_the_floor(real28):
    # Real scans the scorer never saw, shifted by -0.3 (clipped to black): SWD normalises each
    # set and stays near the real floor; the intensity distance and the blend do not.
    order = np.random.default_rng(0).permutation(len(real28))
    train, holdout, unseen = real28[order[:60]], real28[order[60:90]], real28[order[90:]]
    scorer = metrics.HeldOutScorer(train, holdout, seed=0)
    honest = scorer(unseen)
    dark = scorer(np.clip(unseen - 0.3, -1, 1))
    assert honest["quality_ratio"] < 2  # real unseen scans pass the bar
    assert dark["swd_holdout"] < 2 * dark["swd_floor"]
    assert dark["intensity_w1_holdout"] > 4 * dark["intensity_w1_floor"]
    assert dark["quality_ratio"] > 4 and dark["quality_ratio"] > 2 * honest["quality_ratio"]
    assert scorer(unseen) == honest  # deterministic; the floors are cached
    for key in ("swd_holdout", "intensity_w1_holdout", "quality_ratio"):
        assert metrics.direction(key) == "min"


def test_held_out_scorer_refuses_what_it_cannot_score():
    with pytest.raises(UserError, match="at least 2"):
        metrics.HeldOutScorer(_blobs(1, 28, 28, 0.1, 0), _blobs(4, 28, 28, 0.1, 1))
    scorer = metrics.HeldOutScorer(_blobs(4, 28, 28, 0.1, 0), _blobs(4, 28, 28, 0.1, 1))
    with pytest.raises(UserError, match="generated images are"):
        scorer(_blobs(4, 32, 32, 0.1, 2))


def test_the_selection_metric_is_measured_on_the_hold_out_and_never_rewards_copying(real28):
    # A checkpoint that reproduces its training scans scores a perfect 0 on SWD against those
    # scans (the old selection), better than any generator of new scans could. The selection
    # figure is measured against the hold-out, where copies sit exactly on the real floor (ratio
    # 1) and real scans the run never saw do about as well; a too-dark generator ranks last.
    order = np.random.default_rng(1).permutation(len(real28))
    train, holdout, unseen = real28[order[:60]], real28[order[60:90]], real28[order[90:150]]
    scorer = metrics.HeldOutScorer(train, holdout, seed=0)
    copies, honest, dark = scorer(train), scorer(unseen), scorer(np.clip(unseen - 0.3, -1, 1))
    assert metrics.swd(train, train, seed=0) == 0 < metrics.swd(train, unseen, seed=0)
    selection = metrics.SELECTION_METRIC
    assert selection in copies
    assert copies[selection] == pytest.approx(1.0)
    assert abs(honest[selection] - copies[selection]) < 0.5
    assert metrics.is_better(selection, honest[selection], dark[selection])
    assert not metrics.is_better(selection, dark[selection], copies[selection])
