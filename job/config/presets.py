"""Presets as data: each is a name, the fields it overrides on `TrainConfig`'s defaults, and the
command that runs it with its expected cost (big_vision's configs open the same way).

`job.config.overrides.resolve` applies them through the one override path, so a preset cannot name a field
that does not exist or give it a wrong type.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class Preset:
    overrides: Mapping[str, Any]
    command: str
    cost: str


# Every interval every epoch, tiny widths: seconds on a CPU (the tests' run). XLA off: compiling
# the step cost a quarter of a smoke run's CPU time (13.0 vs 9.9 s user, 2 epochs) and never paid back.
_SMOKE = dict(
    name="smoke", dataset_config="28", g_depth=3, d_depth=3, g_filters=8, d_filters=8,
    latent_dim=32, global_batch_size=16, epochs=2, sample_every_epochs=1,
    checkpoint_every_epochs=1, metrics_every_epochs=1, metric_num_images=64,
    allow_synthetic_data=True, xla="off",
)

PRESETS: Mapping[str, Preset] = {
    "default": Preset({}, "covidct train", "500 epochs at 64x64: ~2 h on 2 CPU cores, minutes on a GPU"),
    "smoke": Preset(_SMOKE, "covidct train --preset smoke", "seconds on 2 CPU cores"),
    # The README's first command: the demo phantoms at 64x64, 1000 steps. DiffAugment without
    # `color`: its brightness and contrast jitter hides grey levels from D, and a CT's grey levels
    # are its Hounsfield units. Measured on the demo (3 seeds, 600 steps): intensity W1 over its
    # floor 1.88/2.04/1.76x without `color` vs 2.22/2.98/2.54x with it; 1000 steps: see the README.
    "demo": Preset(dict(
        name="demo", dataset_config="64", g_depth=5, d_depth=5, g_filters=16, d_filters=16,
        global_batch_size=16, epochs=200, sample_every_epochs=10, checkpoint_every_epochs=20,
        metrics_every_epochs=20, g_lr=2e-4, d_lr=2e-4, augment="translation,cutout",
        allow_synthetic_data=True,
    ), "covidct train --preset demo", "~3 minutes on 2 CPU cores"),
    # The seed's first result: 28x28 after 500 epochs (it trained on its COVID scans only:
    # --set labels=covid), with LeCam regularisation at 0.3, which won on the real COVID scans
    # (bench --only seed, 500 epochs, seeds 0 and 1: README "LeCam against the seed's recipe").
    # The seed's own recipe: --set lecam_weight=0.
    "seed28": Preset(dict(name="seed28", dataset_config="28", epochs=500, lecam_weight=0.3),
                     "covidct train --preset seed28",
                     # Measured (bench --only seed, 2026-12-07): 144 kimg, ~41 img/s with the machine to itself.
                     "~75 min on 2 CPU cores with --set labels=covid (144 kimg); ~2.5 h on every class"),
    # The seed's large result: 336x504, 2250 epochs (see k8s/), with the seed's findings (LeakyReLU,
    # lr 1e-4, no dropout, 11 hidden layers in G and 8 in D: the defaults). Shapes: a 6x8 seed map,
    # 6 stages each way, widths capped at 256: G 7.5M / D 4.0M parameters, D's receptive field
    # 382 px, a 167 MB checkpoint, 65 GFLOP per image per step (`covidct train --dry-run`).
    "seed336x504": Preset(dict(
        name="seed336x504", dataset_config="336x504", epochs=2250, global_batch_size=16,
        g_filters=32, d_filters=32, max_filters=256, sample_every_epochs=25,
        checkpoint_every_epochs=25, metrics_every_epochs=25,
    ), "kubectl apply -f k8s/",
       "~3 h on one L4 (estimate: python -m bench.presets), ~15 days on 2 CPU cores"),
}
