"""FID and KID on InceptionV3 pool features (Heusel et al. 2017; Binkowski et al. 2018), when
weights are given ("imagenet" or a weights file, local or in a bucket).
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import numpy as np

from job import storage
from job.errors import UserError
from job.metrics.arrays import as_images, as_matrix

INCEPTION_SIZE = 299

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
    a, b = as_matrix(f1, "f1"), as_matrix(f2, "f2")
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
    a, b = as_matrix(feats1, "feats1"), as_matrix(feats2, "feats2")
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

        x = as_images(images, "images")
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



def extractor(weights: str) -> InceptionFeatures | None:
    """The FID/KID feature extractor for `weights` ("" = none, "imagenet", a path or a gs:// URI).

    A bucket file is used through `storage.local_copy`: keyed by the whole URI, revalidated
    against the object's checksum, never trusted half-downloaded.
    """
    if not weights:
        return None
    if weights == "imagenet":
        return InceptionFeatures(weights)
    return InceptionFeatures(str(storage.local_copy(weights)))
