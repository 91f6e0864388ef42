"""The models' layer plans, as pure arithmetic: no TensorFlow, nothing built.

    covidct train --preset seed336x504 --dry-run   # prints these figures per model

`generator_plan` / `discriminator_plan` say, layer by layer, what `job.training.models` builds for
a config (the builders read the same plans); `job.training.capacity` prices them.

Geometry, for any H×W (square or not, powers of two or not):

- `stages` = `upsampling_stages(H, W)` 2x steps: the most that keep the seed map's short side at
  4-8 px (its sides are ceil(H / 2^stages) x ceil(W / 2^stages)); it, the seed map and the crop
  are computed once, in `job.config.geometry`, which the config's checks read too;
- the generator upsamples the seed map until the sides are a whole fraction of H×W again
  (H / 2^j x W / 2^j, j = the 2-powers H and W share, at most `stages`), crops the centre there,
  and runs the last j stages on exact sizes: 336x504 goes 6x8 -> 12x16 -> 24x32 -> 48x64, crop
  42x63 -> 84x126 -> 168x252 -> 336x504. Nothing is generated that is thrown away at full size;
- the discriminator has its own stages: stride-2 convolutions ('same' padding, so ceil-halving)
  down to the same few pixels (336x504 -> ... -> 11x16 -> 6x8), then a dense read-out. Its
  receptive field grows with every stage and every stride-1 layer at a coarse level, so it sees
  the whole lung field, not texture patches.

Widths double per stage away from the image, capped at `max_filters`; depth (`g_depth` and
`d_depth`: hidden weight layers, the seed project's measure) beyond the stages goes to stride-1
3x3 layers at the coarsest levels, where it is cheap.
"""

from __future__ import annotations

import dataclasses
import math

from job.config import TrainConfig
from job.config.geometry import geometry, upsampling_stages

@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a plan. Shapes are per example: (h, w, c) or (n,) for dense in/out.

    `kind`: "dense", "reshape", "conv" (stride 1 or 2), "deconv" (transposed, stride 2), "crop",
    "flatten". `norm`: batch norm follows; `act`: the activation follows. `crop`: ((top, bottom),
    (left, right)) for "crop".
    """

    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: int = 0
    stride: int = 1
    bias: bool = True
    norm: bool = False
    act: bool = False
    crop: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))

    @property
    def weighted(self) -> bool:
        return self.kind in ("dense", "conv", "deconv")

    @property
    def params(self) -> int:
        """Trainable parameters (kernel, bias, batch norm's scale and offset)."""
        return self._kernel_params() + self._bias() + (2 * self.channels if self.norm else 0)

    @property
    def all_params(self) -> int:
        """Every variable a model holds: trainable plus batch norm's moving mean and variance."""
        return self.params + (2 * self.channels if self.norm else 0)

    @property
    def channels(self) -> int:
        return self.out_shape[-1]

    def _kernel_params(self) -> int:
        if self.kind == "dense":
            return self.in_shape[-1] * self.out_shape[-1]
        if self.kind in ("conv", "deconv"):
            return self.kernel * self.kernel * self.in_shape[-1] * self.out_shape[-1]
        return 0

    def _bias(self) -> int:
        return self.channels if self.weighted and self.bias else 0

    @property
    def forward_flops(self) -> int:
        """FLOPs of one example's forward pass (2 per multiply-add; norms and activations free).

        A convolution does kernel² x c_in MACs per output value; a transposed convolution does
        kernel² x c_out per input value (each input pixel is spread over a kernel-sized patch).
        """
        if self.kind == "dense":
            return 2 * self.in_shape[-1] * self.out_shape[-1]
        if self.kind == "conv":
            h, w, c = self.out_shape
            return 2 * h * w * c * self.kernel**2 * self.in_shape[-1]
        if self.kind == "deconv":
            h, w, c = self.in_shape
            return 2 * h * w * c * self.kernel**2 * self.out_shape[-1]
        return 0


def _spread(extra: int, levels: int) -> list[int]:
    """How many stride-1 layers each resolution level gets, lowest level first (round-robin)."""
    counts = [0] * levels
    for i in range(max(extra, 0)):
        counts[i % levels] += 1
    return counts


def _width(base: int, level_from_image: int, cap: int) -> int:
    return min(base * 2**level_from_image, cap)


def generator_plan(config: TrainConfig) -> list[Layer]:
    """Latent (latent_dim,) -> image (H, W, 1): what `models.build_generator` builds."""
    geo = geometry(config.height, config.width)
    stages = geo.stages
    norm = config.norm == "batch"
    extra = _spread(config.g_depth - 1 - stages, stages)  # the dense projection is layer 1
    h, w = geo.seed
    c = _width(config.g_filters, stages, config.max_filters)
    plan = [Layer("dense", (config.latent_dim,), (h * w * c,), bias=False, norm=norm, act=True),
            Layer("reshape", (h * w * c,), (h, w, c))]
    for level in range(stages + 1):  # level 0 is the seed map, level `stages` the image
        if level == geo.crop_level and geo.crops:
            (top, left) = ((h - geo.crop_to[0]) // 2, (w - geo.crop_to[1]) // 2)
            cut = ((top, h - geo.crop_to[0] - top), (left, w - geo.crop_to[1] - left))
            plan.append(Layer("crop", (h, w, c), (*geo.crop_to, c), crop=cut))
            h, w = geo.crop_to
        if level == stages:
            break
        for _ in range(extra[level]):
            plan.append(Layer("conv", (h, w, c), (h, w, c), 3, 1, bias=False, norm=norm, act=True))
        out = _width(config.g_filters, stages - level - 1, config.max_filters)
        plan.append(Layer("deconv", (h, w, c), (2 * h, 2 * w, out), 4, 2, bias=False, norm=norm,
                          act=True))
        h, w, c = 2 * h, 2 * w, out
    plan.append(Layer("conv", (h, w, c), (h, w, 1), 3, 1))  # then tanh
    return plan


def discriminator_plan(config: TrainConfig) -> list[Layer]:
    """Image (H, W, 1) -> one logit: what `models.build_discriminator` builds."""
    stages = upsampling_stages(config.height, config.width)
    norm = config.norm == "batch"
    extra = _spread(config.d_depth - stages, stages)
    h, w, c = config.height, config.width, 1
    plan = []
    for step in range(stages):  # image resolution first, lowest resolution last
        level = stages - 1 - step  # the generator's level numbering: 0 is the coarsest
        out = _width(config.d_filters, step, config.max_filters)
        nh, nw = math.ceil(h / 2), math.ceil(w / 2)  # 'same' padding, stride 2
        # DCGAN: no normalisation on the first layer, which sees the raw image.
        plan.append(Layer("conv", (h, w, c), (nh, nw, out), 4, 2, norm=norm and step > 0, act=True))
        h, w, c = nh, nw, out
        for _ in range(extra[level]):
            plan.append(Layer("conv", (h, w, c), (h, w, c), 3, 1, norm=norm, act=True))
    plan += [Layer("flatten", (h, w, c), (h * w * c,)), Layer("dense", (h * w * c,), (1,))]
    return plan
