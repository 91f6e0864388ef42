"""Image geometry, as pure arithmetic: how many 2x stages link a seed map to H×W, and where the
generator crops. The one place it is computed: `job.config.checks` refuses a depth that cannot
reach the image from it, `job.training.layer_plan` lays the models out on it. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

MAX_UPSAMPLING_STAGES = 6  # a 4-8 px seed map up to 511 px on the short side


def upsampling_stages(height: int, width: int) -> int:
    """How many 2x stages link a small seed map to H×W, whatever H and W's factors are.

    The most stages that keep the seed map's short side at 4 px or more: its sides are
    ceil(H / 2^s) x ceil(W / 2^s), so the short side is 4-8 px (28 -> 7x7, 64 -> 4x4,
    336x504 -> 6x8). Sides that 2^s does not divide are reached by cropping the generator's map
    where they first divide (`geometry` below); the discriminator halves with
    'same' padding down to the same few pixels. At most `MAX_UPSAMPLING_STAGES`.
    """
    short = min(height, width)
    stages = 0
    while stages < MAX_UPSAMPLING_STAGES and short >= 4 * 2 ** (stages + 1):
        stages += 1
    return stages


def _two_powers(n: int) -> int:
    """How many times 2 divides n."""
    count = 0
    while n % 2 == 0 and n > 0:
        n //= 2
        count += 1
    return count


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where the generator starts and where it crops, for an H×W image."""

    height: int
    width: int
    stages: int
    seed: tuple[int, int]  # the seed map (h0, w0)
    crop_level: int  # stages after the seed at which the map is cropped (0 with an exact seed)
    crop_from: tuple[int, int]  # the map's size before the crop (== crop_to: no crop)
    crop_to: tuple[int, int]

    @property
    def crops(self) -> bool:
        return self.crop_from != self.crop_to

    def describe(self) -> str:
        text = (f"{self.height}x{self.width}: {self.stages} upsampling stages from a "
                f"{self.seed[0]}x{self.seed[1]} seed map")
        if self.crops:
            text += (f" ({self.crop_from[0]}x{self.crop_from[1]} cropped to "
                     f"{self.crop_to[0]}x{self.crop_to[1]} after {self.crop_level} stages)")
        return text


def geometry(height: int, width: int) -> Geometry:
    """The generator's seed map and crop for an H×W image (see the module docstring)."""
    stages = upsampling_stages(height, width)
    seed = (math.ceil(height / 2**stages), math.ceil(width / 2**stages))
    exact = min(stages, _two_powers(height), _two_powers(width))  # last stages on exact sizes
    level = stages - exact
    crop_to = (height >> exact, width >> exact)
    crop_from = (seed[0] << level, seed[1] << level)
    return Geometry(height, width, stages, seed, level, crop_from, crop_to)
