"""What the models' layer plans cost, as pure arithmetic: no TensorFlow, nothing built.

    covidct train --preset seed336x504 --dry-run   # prints these figures per model

From an architecture's plans (`job.training.models`, which its builders read too; a test holds
`count_params` and the bench's FLOP count to these numbers) come the parameters, the forward
FLOPs per image, the discriminator's receptive field and the bytes of a checkpoint, so the CLI,
the run's plan line, the bench and the README's preset table quote one set of figures.
"""

from __future__ import annotations

import dataclasses

from job.config import TrainConfig
from job.config.geometry import Geometry, geometry
from job.training.layer_plan import Layer
from job.training.models import discriminator_plan, generator_plan

BYTES_PER_PARAMETER = 4  # variables stay float32, also under mixed precision
BALANCE_LIMIT = 4.0  # G and D parameter counts within this factor of each other: "ok"
ADAM_SLOTS = 2  # Keras Adam keeps a momentum and a velocity per trainable variable
# A GAN step per training image: G forward+backward (3x G), D forward+backward on the real and on
# the fake image (2 x 3x D) and the generator's gradient back through D once more (1x D).
G_STEP_PASSES, D_STEP_PASSES = 3, 7


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
    def balance_advice(self) -> str:
        """What to do about an unbalanced pair ("" when within the limit). A warning only: the
        seed's 28x28 shape trains well at 7.1x."""
        ratio, verdict = self.balance
        if verdict == "ok":
            return ""
        if self.g_params >= self.d_params:
            return "D is the smaller: widen it (--set d_filters=...) or narrow G (g_filters)"
        return "G is the smaller: widen it (--set g_filters=...) or narrow D (d_filters)"

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
            f"({'within' if verdict == 'ok' else 'outside'} {BALANCE_LIMIT:g}x either way)"
            + (f"; {self.balance_advice} (a warning, not an error)" if verdict != "ok" else ""),
            f"step: {_giga(self.step_flops_per_image)} GFLOP/image (G {_giga(self.g_step_flops)} "
            f"+ D {_giga(self.d_step_flops)})",
            f"checkpoint: {self.checkpoint_bytes / 1e6:.0f} MB (G, EMA G, D and Adam's 2 slots per "
            f"trainable variable, float32)",
        ]

    def short(self) -> str:
        """One clause for the run's plan line."""
        return (f"G {_millions(self.g_params)} / D {_millions(self.d_params)} parameters "
                f"({self.balance[0]:.1f}x, " + (self.balance_advice or "ok") + "), "
                f"{_giga(self.g_step_flops)} + "
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
