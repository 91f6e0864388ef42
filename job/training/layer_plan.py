"""The vocabulary of a model's layer plan, as pure arithmetic: no TensorFlow, nothing built.

    covidct train --preset seed336x504 --dry-run   # prints these figures per model

An architecture (`job.training.models.<name>`) lays its generator and discriminator out as lists
of `Layer`s; `job.training.capacity` prices them (parameters, FLOPs, receptive field) and
`job.training.models.layers.apply_plan` builds them, so the figures and the models cannot drift.
`spread` and `width` are the usual ways depth and width grow with the stages.
"""

from __future__ import annotations

import dataclasses

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


def spread(extra: int, levels: int) -> list[int]:
    """How many stride-1 layers each resolution level gets, lowest level first (round-robin)."""
    counts = [0] * levels
    for i in range(max(extra, 0)):
        counts[i % levels] += 1
    return counts


def width(base: int, level_from_image: int, cap: int) -> int:
    return min(base * 2**level_from_image, cap)
