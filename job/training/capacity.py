"""The models' layer plans and what they cost, as pure arithmetic: no TensorFlow, nothing built.

    covidct train --preset seed336x504 --dry-run   # prints these figures per model

`generator_plan` / `discriminator_plan` say, layer by layer, what `job.training.models` builds for
a config (the builders read the same plans, and a test holds `count_params` and the bench's FLOP
count to these numbers). From a plan come the parameters, the forward FLOPs per image, the
discriminator's receptive field and the bytes of a checkpoint, so the CLI, the run's plan line,
the bench and the README's preset table quote one set of figures.

Geometry, for any H×W (square or not, powers of two or not):

- `stages` = `config.upsampling_stages(H, W)` 2x steps: the most that keep the seed map's short
  side at 4-8 px (its sides are ceil(H / 2^stages) x ceil(W / 2^stages));
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

from job.config import TrainConfig, upsampling_stages

BYTES_PER_PARAMETER = 4  # variables stay float32, also under mixed precision
BALANCE_LIMIT = 4.0  # G and D parameter counts within this factor of each other: "ok"
ADAM_SLOTS = 2  # Keras Adam keeps a momentum and a velocity per trainable variable
# A GAN step per training image: G forward+backward (3x G), D forward+backward on the real and on
# the fake image (2 x 3x D) and the generator's gradient back through D once more (1x D).
G_STEP_PASSES, D_STEP_PASSES = 3, 7


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


def parameters(plan: list[Layer]) -> int:
    """Every variable of the model (Keras `count_params`)."""
    return sum(layer.all_params for layer in plan)


def trainable_parameters(plan: list[Layer]) -> int:
    return sum(layer.params for layer in plan)


def forward_flops(plan: list[Layer]) -> int:
    """FLOPs of one image's forward pass."""
    return sum(layer.forward_flops for layer in plan)


def hidden_layers(plan: list[Layer]) -> int:
    """Weighted layers but the output: the seed project's depth measure."""
    return sum(layer.weighted for layer in plan) - 1


def receptive_field(plan: list[Layer]) -> int:
    """Pixels (per side) of the image one unit of the last feature map sees, over the conv stack.

    r grows by (kernel - 1) x jump per convolution, where jump is the product of the strides
    before it; the dense read-out after the stack is not counted (it mixes every position, but
    linearly: what makes a feature judge the whole scan is the convolutions' field).
    """
    r, jump = 1, 1
    for layer in plan:
        if layer.kind == "conv":
            r += (layer.kernel - 1) * jump
            jump *= layer.stride
    return r


def checkpoint_bytes(g_params: int, g_trainable: int, d_params: int, d_trainable: int) -> int:
    """Bytes of the variables a checkpoint holds: G, the EMA G, D, and Adam's two slots per
    trainable variable of each (float32; the optimizers' step counters are negligible)."""
    floats = 2 * g_params + d_params + ADAM_SLOTS * (g_trainable + d_trainable)
    return BYTES_PER_PARAMETER * floats


def balance(g_params: int, d_params: int, limit: float = BALANCE_LIMIT) -> tuple[float, str]:
    """(the larger count / the smaller, "ok" when within `limit`, else "bad")."""
    ratio = max(g_params, d_params) / max(min(g_params, d_params), 1)
    return ratio, "ok" if ratio <= limit else "bad"


@dataclasses.dataclass(frozen=True)
class Capacity:
    """The figures `--dry-run`, the plan line, the bench and the README quote for a config."""

    geometry: Geometry
    g_params: int
    g_trainable: int
    d_params: int
    d_trainable: int
    g_forward_flops: int
    d_forward_flops: int
    d_receptive_field: int
    g_hidden_layers: int
    d_hidden_layers: int

    @property
    def g_step_flops(self) -> int:
        """G's share of a training step per image: forward + backward."""
        return G_STEP_PASSES * self.g_forward_flops

    @property
    def d_step_flops(self) -> int:
        """D's share per image: forward + backward on a real and a fake image, and G's gradient."""
        return D_STEP_PASSES * self.d_forward_flops

    @property
    def step_flops_per_image(self) -> int:
        return self.g_step_flops + self.d_step_flops

    @property
    def checkpoint_bytes(self) -> int:
        return checkpoint_bytes(self.g_params, self.g_trainable, self.d_params, self.d_trainable)

    @property
    def balance(self) -> tuple[float, str]:
        return balance(self.g_params, self.d_params)

    @property
    def sees_whole_image(self) -> bool:
        return self.d_receptive_field >= min(self.geometry.height, self.geometry.width)

    def lines(self) -> list[str]:
        """Human-readable lines: one per model, then balance and checkpoint."""
        verdict = self.balance[1]
        short = min(self.geometry.height, self.geometry.width)
        return [
            f"generator: {_millions(self.g_params)} parameters, {self.g_hidden_layers} hidden "
            f"layers, {_giga(self.g_step_flops)} GFLOP/image per step (forward+backward; "
            f"forward {_giga(self.g_forward_flops)})",
            f"discriminator: {_millions(self.d_params)} parameters, {self.d_hidden_layers} hidden "
            f"layers, {_giga(self.d_step_flops)} GFLOP/image per step (real and fake, forward+"
            f"backward, and G's gradient; forward {_giga(self.d_forward_flops)}), receptive field "
            f"{self.d_receptive_field} px ({'covers' if self.sees_whole_image else 'less than'} "
            f"the {short} px short side)",
            f"balance: G/D parameters {self.g_params / max(self.d_params, 1):.2f}x: {verdict} "
            f"({'within' if verdict == 'ok' else 'outside'} {BALANCE_LIMIT:g}x either way)",
            f"step: {_giga(self.step_flops_per_image)} GFLOP/image (G {_giga(self.g_step_flops)} "
            f"+ D {_giga(self.d_step_flops)})",
            f"checkpoint: {self.checkpoint_bytes / 1e6:.0f} MB (G, EMA G, D and Adam's 2 slots per "
            f"trainable variable, float32)",
        ]

    def short(self) -> str:
        """One clause for the run's plan line."""
        return (f"G {_millions(self.g_params)} / D {_millions(self.d_params)} parameters "
                f"({self.balance[0]:.1f}x, {self.balance[1]}), {_giga(self.g_step_flops)} + "
                f"{_giga(self.d_step_flops)} GFLOP/image per step (G + D), D receptive field "
                f"{self.d_receptive_field} px, checkpoint {self.checkpoint_bytes / 1e6:.0f} MB")


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n < 10e6 else f"{n / 1e6:.1f}M"


def _giga(flops: int) -> str:
    return f"{flops / 1e9:.3g}"


def class_embedding_parameters(config: TrainConfig) -> tuple[int, int]:
    """(G, D) parameters a class-conditional pair adds beside the plans: G's class embedding
    (added to z, latent_dim wide) and D's projection embedding (as wide as D's features)."""
    if not config.conditional:
        return 0, 0
    from tfds_covidct.covid_ct.sources import LABELS  # the models' classes (no TensorFlow)

    features = discriminator_plan(config)[-1].in_shape[-1]
    return len(LABELS) * config.latent_dim, len(LABELS) * features


def capacity(config: TrainConfig) -> Capacity:
    """Every figure for `config`'s models, from their plans (and a conditional pair's class
    embeddings: lookups, so they add parameters; D's projection adds 2 FLOPs per feature)."""
    g, d = generator_plan(config), discriminator_plan(config)
    g_embed, d_embed = class_embedding_parameters(config)
    projection_flops = 2 * d[-1].in_shape[-1] if config.conditional else 0
    return Capacity(
        geometry=geometry(config.height, config.width),
        g_params=parameters(g) + g_embed, g_trainable=trainable_parameters(g) + g_embed,
        d_params=parameters(d) + d_embed, d_trainable=trainable_parameters(d) + d_embed,
        g_forward_flops=forward_flops(g), d_forward_flops=forward_flops(d) + projection_flops,
        d_receptive_field=receptive_field(d),
        g_hidden_layers=hidden_layers(g), d_hidden_layers=hidden_layers(d),
    )
