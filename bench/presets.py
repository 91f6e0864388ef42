"""The README's table of presets: each one's models, checkpoint and projected GPU time.

    python -m bench.presets          # prints the markdown table (pure arithmetic, nothing built)

Figures come from the layer plans (`job.training.capacity`); the GPU time is the estimate of
`bench.projection` (an assumed share of an L4's float32 peak) over the preset's whole run, on
the full public set's training split, or the demo phantoms' for presets that train on them.
Checkpoint saves, metrics and samples are left out: the `seed336x504` bench rows add the saves.
"""

from __future__ import annotations

import sys

from bench import projection
from job.config import resolve
from job.config import PRESETS
from job.training.capacity import capacity

DEMO_TRAIN_IMAGES = 85  # `covidct prepare --demo`: the phantoms' training split (the demo's plan line)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "< 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def table() -> str:
    lines = ["| preset | size | G / D parameters | D receptive field | checkpoint | GFLOP/image/step "
             "| epochs x images | 1 L4 (estimate) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in PRESETS:
        config = resolve(name)
        cap = capacity(config)
        images = DEMO_TRAIN_IMAGES if config.allow_synthetic_data else projection.FULL_TRAIN_IMAGES
        run = projection.run_cost(config, images, projection.gpu_seconds_per_step(
            cap.step_flops_per_image * config.global_batch_size))
        lines.append(
            f"| `{name}` | {config.height}x{config.width} | {cap.g_params / 1e6:.2f}M / "
            f"{cap.d_params / 1e6:.2f}M ({cap.balance[0]:.1f}x) | {cap.d_receptive_field} px | "
            f"{cap.checkpoint_bytes / 1e6:.0f} MB | {cap.step_flops_per_image / 1e9:.3g} | "
            f"{config.epochs} x {images} | {_duration(run.seconds)} |")
    return "\n".join(lines)


def main() -> int:
    print(table())
    print(f"\nGPU time: {projection.assumptions(1)}; FLOPs counted from the layers "
          "(job/training/capacity.py); checkpoint saves, metrics and samples left out.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
