"""SWD: the sliced Wasserstein distance between Laplacian-pyramid patch descriptors of real and
generated images (Karras et al. 2018, "Progressive Growing of GANs", appendix D; reference code
progressive_growing_of_gans/metrics/sliced_wasserstein.py). It needs no pretrained network, so it
runs offline and on tiny data. Each set's patches are normalised by that set's own statistics, so
SWD compares structure, not global intensity: pair it with `job.metrics.intensity`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from job.errors import UserError
from job.metrics.arrays import as_images, pyr_down, pyr_up

# SWD parameters of the progressive-GAN paper: 7x7 neighbourhoods, 128 per image, 4 repeats of
# 128 random directions; pyramid levels down to 16 pixels.
SWD_PATCH_SIZE = 7
SWD_PATCHES_PER_IMAGE = 128
SWD_DIR_REPEATS = 4
SWD_DIRS_PER_REPEAT = 128
SWD_MIN_LEVEL_SIDE = 16


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
        low = pyr_down(pyramid[-1])
        pyramid[-1] = pyramid[-1] - pyr_up(low, pyramid[-1].shape[1:])
        pyramid.append(low)
    return pyramid


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
    r = as_images(real, "real")
    f = as_images(fake, "fake")
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
