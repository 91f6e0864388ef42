"""Quality metrics for generated CT slices: GAN losses say little about quality, these measure it.

- SWD: the sliced Wasserstein distance between Laplacian-pyramid patch descriptors of real and
  generated images (Karras et al. 2018, "Progressive Growing of GANs", appendix D). It needs no
  pretrained network, so it runs offline and on tiny data; it is the metric sweeps optimise.
- FID and KID on InceptionV3 pool features, when weights are available ("imagenet" or a local file).
- diversity: mean pairwise distance among generated images; it falls towards 0 on mode collapse.
- d_accuracy_real: how often the discriminator calls real images real.

Every function takes image batches in [-1, 1] of shape (N, H, W, 1) as numpy arrays (what the
generator emits) and returns plain floats, so results go straight into metrics.jsonl. `METRICS`
names the metrics a run can log; `compute` runs several by name.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import scipy.ndimage
import scipy.spatial.distance

from job.errors import UserError

# SWD parameters of the progressive-GAN paper: 7x7 neighbourhoods, 128 per image, 4 repeats of
# 128 random directions; pyramid levels down to 16 pixels.
SWD_PATCH_SIZE = 7
SWD_PATCHES_PER_IMAGE = 128
SWD_DIR_REPEATS = 4
SWD_DIRS_PER_REPEAT = 128
SWD_MIN_LEVEL_SIDE = 16

INCEPTION_SIZE = 299

# Diversity halves images until the shorter side is at most this: enough to tell scans apart,
# cheap for N = 1000.
DIVERSITY_MAX_SIDE = 64

# cv2.pyrDown's 5-tap binomial filter, applied separably (5x5 = outer product of this with itself).
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0


# --------------------------------------------------------------------------- input checks


def _as_images(images: Any, name: str) -> np.ndarray:
    """(N, H, W, 1) or (N, H, W) in [-1, 1] -> float32 (N, H, W); a clear error otherwise."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise UserError(
            f"{name}: expected images of shape (N, H, W, 1), got {tuple(np.shape(images))}"
        )
    if x.shape[0] == 0:
        raise UserError(f"{name}: no images")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{name}: images contain NaN or inf (did the generator diverge?)")
    return x


def _as_matrix(features: Any, name: str) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise UserError(f"{name}: expected features of shape (N >= 2, D), got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise UserError(f"{name}: features contain NaN or inf")
    return f


# --------------------------------------------------------------------------- Laplacian pyramid


def _pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur with the binomial filter and keep every second pixel (cv2.pyrDown, reflect-101)."""
    x = scipy.ndimage.correlate1d(x, _BINOMIAL, axis=1, mode="mirror")
    x = scipy.ndimage.correlate1d(x, _BINOMIAL, axis=2, mode="mirror")
    return x[:, ::2, ::2]


def _pyr_up(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Upsample by zero insertion and blur (cv2.pyrUp), cropped to `shape` for odd sizes."""
    n, h, w = x.shape
    up = np.zeros((n, 2 * h, 2 * w), dtype=x.dtype)
    up[:, ::2, ::2] = x
    # Zero insertion keeps a quarter of the energy; twice the filter per axis restores it.
    up = scipy.ndimage.correlate1d(up, 2 * _BINOMIAL, axis=1, mode="mirror")
    up = scipy.ndimage.correlate1d(up, 2 * _BINOMIAL, axis=2, mode="mirror")
    return up[:, : shape[0], : shape[1]]


def swd_level_shapes(height: int, width: int) -> list[tuple[int, int]]:
    """The (h, w) of each pyramid level SWD compares, finest first.

    Levels halve down to a shorter side of 16 pixels, as in the paper; the finest level always
    counts, so 28x28 has one level and 336x504 has five (336, 168, 84, 42, 21 rows).
    """
    if min(height, width) < SWD_PATCH_SIZE:
        raise UserError(
            f"SWD needs images of at least {SWD_PATCH_SIZE}x{SWD_PATCH_SIZE}, got {height}x{width}"
        )
    shapes = [(height, width)]
    while True:
        h, w = (shapes[-1][0] + 1) // 2, (shapes[-1][1] + 1) // 2
        if min(h, w) < SWD_MIN_LEVEL_SIDE:
            return shapes
        shapes.append((h, w))


def _laplacian_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """Band-pass levels (detail at each scale) plus the coarsest low-pass level last."""
    pyramid = [x]
    for _ in range(levels - 1):
        low = _pyr_down(pyramid[-1])
        pyramid[-1] = pyramid[-1] - _pyr_up(low, pyramid[-1].shape[1:])
        pyramid.append(low)
    return pyramid


# --------------------------------------------------------------------------- SWD


def _patch_centres(
    shape: tuple[int, int], count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random (y, x) centres of `count` patches that lie wholly inside an image of `shape`."""
    r = SWD_PATCH_SIZE // 2
    return rng.integers(r, shape[0] - r, size=count), rng.integers(r, shape[1] - r, size=count)


def _descriptors(level: np.ndarray, centres: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """7x7 patches at `centres`, flattened and normalised by this set's own mean and std.

    Patch i comes from image i mod N, so every image contributes equally.

    Normalising each set by its own statistics is the paper's choice: SWD then compares the
    shape of the patch distributions at each scale, not global brightness or contrast.
    """
    y, x = centres
    image = np.arange(len(y)) % len(level)
    offsets = np.arange(SWD_PATCH_SIZE) - SWD_PATCH_SIZE // 2
    patches = level[
        image[:, None, None],
        y[:, None, None] + offsets[None, :, None],
        x[:, None, None] + offsets[None, None, :],
    ].reshape(len(image), -1)
    patches = patches - patches.mean()
    std = patches.std()
    return patches / std if std > 0 else patches


def _sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> float:
    """Mean 1-D Wasserstein distance between projections of `a` and `b` on random unit vectors."""
    dirs = rng.standard_normal((a.shape[1], SWD_DIR_REPEATS * SWD_DIRS_PER_REPEAT))
    dirs = (dirs / np.linalg.norm(dirs, axis=0, keepdims=True)).astype(np.float32)
    # (direction, descriptor) layout keeps each sort contiguous: about twice as fast as axis 0.
    proj_a, proj_b = dirs.T @ a.T, dirs.T @ b.T
    proj_a.sort(axis=1)
    proj_b.sort(axis=1)
    # Repeats of equal size: the mean over repeats of per-repeat means is the overall mean.
    return float(np.mean(np.abs(proj_a - proj_b)))


def swd_levels(real: Any, fake: Any, *, seed: int = 0) -> list[float]:
    """SWD ×1e3 at each Laplacian-pyramid level (finest first; shapes from `swd_level_shapes`).

    Each level yields 128 random 7x7 patches per image of the larger set (each set's images
    cycled evenly), normalised per level and set, and compared along 4x128 random
    unit directions. Patch positions and directions come from `seed` alone, and the two sets
    share the positions (common random numbers lower the variance of the comparison), so the
    same inputs and seed always give the same values and identical sets give exactly 0.
    Values are multiplied by 1e3 like the paper's tables (its "SWDx1e3").
    """
    r = _as_images(real, "real")
    f = _as_images(fake, "fake")
    if r.shape[1:] != f.shape[1:]:
        raise UserError(f"SWD compares images of one size: real {r.shape[1:]} vs fake {f.shape[1:]}")
    shapes = swd_level_shapes(*r.shape[1:])
    count = SWD_PATCHES_PER_IMAGE * max(len(r), len(f))
    values = []
    for lod, (level_r, level_f) in enumerate(
        zip(_laplacian_pyramid(r, len(shapes)), _laplacian_pyramid(f, len(shapes)))
    ):
        centres = _patch_centres(level_r.shape[1:], count, np.random.default_rng((seed, lod, 0)))
        desc_r, desc_f = _descriptors(level_r, centres), _descriptors(level_f, centres)
        dir_rng = np.random.default_rng((seed, lod, 1))
        values.append(1e3 * _sliced_wasserstein(desc_r, desc_f, dir_rng))
    return values


def swd(real: Any, fake: Any, *, seed: int = 0) -> float:
    """SWD ×1e3 averaged over pyramid levels (the paper's "SWDx1e3_avg"); lower is better.

    Works offline for any size from 7x7 up (28x28 to 336x504 in this project) and any N >= 1,
    deterministic for a fixed seed. See `swd_levels` for the method.
    """
    return float(np.mean(swd_levels(real, fake, seed=seed)))


# --------------------------------------------------------------------------- FID / KID arithmetic


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d² = |mu1 - mu2|² + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½). The trace of the matrix square
    root is taken from the eigenvalues of the symmetric sigma1^½ sigma2 sigma1^½ (same spectrum as
    sigma1 sigma2), which stays real and stable for the singular covariances that N < 2048
    features give, where scipy's sqrtm returns complex noise. Scalars are 1-D Gaussians
    (sigma = variance).
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise UserError(
            f"frechet_distance: shapes do not match: mu {mu1.shape}/{mu2.shape}, "
            f"sigma {s1.shape}/{s2.shape}"
        )
    for name, value in (("mu1", mu1), ("mu2", mu2), ("sigma1", s1), ("sigma2", s2)):
        if not np.all(np.isfinite(value)):
            raise UserError(f"frechet_distance: {name} contains NaN or inf")
    root1 = _sqrt_psd((s1 + s1.T) / 2)
    middle = root1 @ s2 @ root1
    tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
    value = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
    return float(max(value, 0.0))


def fid_from_features(f1: Any, f2: Any) -> float:
    """FID between two feature sets (N, D): the Fréchet distance of their Gaussian fits."""
    a, b = _as_matrix(f1, "f1"), _as_matrix(f2, "f2")
    if a.shape[1] != b.shape[1]:
        raise UserError(f"fid: feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def kid(
    feats1: Any, feats2: Any, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> float:
    """Kernel Inception Distance: unbiased MMD² with the kernel k(x, y) = (x·y / D + 1)³.

    Averaged over `subsets` random subsets of `subset_size` (capped at the smaller set) from each
    side, as in Bińkowski et al. 2018. Unlike FID it is unbiased, so it is the one to trust with a
    few hundred images; it can be slightly negative when the distributions match.
    """
    a, b = _as_matrix(feats1, "feats1"), _as_matrix(feats2, "feats2")
    if a.shape[1] != b.shape[1]:
        raise UserError(f"kid: feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise UserError(f"kid: need subsets >= 1 and subset_size >= 2, got {subsets}, {subset_size}")
    m = min(subset_size, len(a), len(b))
    dim = a.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (x @ x.T / dim + 1.0) ** 3
        k_yy = (y @ y.T / dim + 1.0) ** 3
        k_xy = (x @ y.T / dim + 1.0) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        total += within - 2.0 * k_xy.mean()
    return float(total / subsets)


# --------------------------------------------------------------------------- Inception features


class InceptionFeatures:
    """InceptionV3 pool features (N, 2048) of grayscale [-1, 1] images, built on first use.

    `weights` is "imagenet" (Keras downloads the no-top weights; offline this is a UserError) or
    a local weights file (.weights.h5 from `save_weights`, or Keras' legacy no-top .h5). A gs://
    file is staged to local disk by the caller through job.storage, the one module that knows
    buckets. Images are repeated to 3 channels and resized to 299x299; InceptionV3 itself
    expects [-1, 1], so no further scaling. Build it outside a distribution strategy's scope.
    """

    def __init__(self, weights: str, *, batch_size: int = 32):
        if not weights:
            raise UserError("inception weights: give 'imagenet' or the path of a weights file")
        if "://" in weights:
            raise UserError(
                f"inception weights {weights!r}: copy the file to local disk first (job.storage)"
            )
        if weights != "imagenet" and not pathlib.Path(weights).is_file():
            raise UserError(f"inception weights: no such file: {weights}")
        self.weights = weights
        self.batch_size = batch_size
        self._model = None

    def _build(self):
        import keras  # Deferred: SWD-only runs and `import job.metrics` never load the network.

        kwargs = dict(
            include_top=False, pooling="avg", input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3)
        )
        if self.weights == "imagenet":
            try:
                return keras.applications.InceptionV3(weights="imagenet", **kwargs)
            except Exception as e:  # Keras raises a bare Exception for a failed download.
                raise UserError(
                    f"could not download the ImageNet InceptionV3 weights ({e}); without network "
                    "access set inception_weights to a local weights file, or '' to skip FID/KID"
                ) from None
        model = keras.applications.InceptionV3(weights=None, **kwargs)
        try:
            model.load_weights(self.weights)
        except (ValueError, OSError, KeyError) as e:
            raise UserError(
                f"could not load InceptionV3 weights from {self.weights}: {e} (expected the "
                "include_top=False network's weights, .weights.h5 or legacy .h5)"
            ) from None
        return model

    def __call__(self, images: Any) -> np.ndarray:
        import tensorflow as tf

        x = _as_images(images, "images")
        if self._model is None:
            self._model = self._build()
        out = []
        for start in range(0, len(x), self.batch_size):
            batch = tf.convert_to_tensor(x[start : start + self.batch_size, :, :, None])
            batch = tf.image.resize(batch, (INCEPTION_SIZE, INCEPTION_SIZE), antialias=True)
            batch = tf.clip_by_value(tf.tile(batch, [1, 1, 1, 3]), -1.0, 1.0)
            out.append(np.asarray(self._model.predict_on_batch(batch), dtype=np.float64))
        return np.concatenate(out, axis=0)


def fid_kid(
    real: Any, fake: Any, extractor: Callable[[Any], np.ndarray], *, seed: int = 0
) -> dict[str, float]:
    """FID and KID between real and fake images, features extracted once for both."""
    f_real, f_fake = extractor(real), extractor(fake)
    return {"fid": fid_from_features(f_real, f_fake), "kid": kid(f_real, f_fake, seed=seed)}


# --------------------------------------------------------------------------- cheap signals


def diversity(images: Any) -> float:
    """Mean pairwise RMS distance between images, on pixels in [0, 1] at <= 64 px.

    Near 0 means the generator draws the same image for every latent (mode collapse); compare it
    with the real set's value. Downsampling (Gaussian pyramid) makes it cheap and insensitive to
    pixel noise.
    """
    x = (_as_images(images, "images") + 1.0) / 2.0
    if len(x) < 2:
        raise UserError("diversity needs at least 2 images")
    while min(x.shape[1:]) > DIVERSITY_MAX_SIDE:
        x = _pyr_down(x)
    flat = x.reshape(len(x), -1).astype(np.float64)
    return float(np.mean(scipy.spatial.distance.pdist(flat)) / math.sqrt(flat.shape[1]))


def d_accuracy_real(logits: Any) -> float:
    """Fraction of real images the discriminator scores as real (logit > 0).

    Near 1 for long stretches means D has won (or memorised a small training set): a sign to
    strengthen augmentation. The logits are D's raw outputs on real images.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if z.size == 0:
        raise UserError("d_accuracy_real: no logits")
    return float(np.mean(z > 0))


# --------------------------------------------------------------------------- registry


def _swd_metric(real, fake, *, seed, extractor):
    values = swd_levels(real, fake, seed=seed)
    shapes = swd_level_shapes(*np.shape(real)[1:3])
    levels = {f"swd_{h}x{w}": v for (h, w), v in zip(shapes, values)}
    return {"swd": float(np.mean(values)), **levels}


def _diversity_metric(real, fake, *, seed, extractor):
    return {"diversity": diversity(fake)}


def _fid_kid_metric(real, fake, *, seed, extractor):
    if extractor is None:
        raise UserError(
            "FID/KID need InceptionV3 weights: set inception_weights ('imagenet' or a file)"
        )
    return fid_kid(real, fake, extractor, seed=seed)


# name -> fn(real, fake, *, seed, extractor) -> {key: value}; keys are what metrics.jsonl logs.
METRICS: Mapping[str, Callable[..., dict[str, float]]] = {
    "swd": _swd_metric,
    "diversity": _diversity_metric,
    "fid_kid": _fid_kid_metric,
}


def compute(
    names: Iterable[str],
    real: Any,
    fake: Any,
    *,
    seed: int = 0,
    extractor: Callable[[Any], np.ndarray] | None = None,
) -> dict[str, float]:
    """Run the named metrics on one real and one generated batch; one flat dict of results."""
    names = list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UserError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    results: dict[str, float] = {}
    for name in names:
        results.update(METRICS[name](real, fake, seed=seed, extractor=extractor))
    return results
