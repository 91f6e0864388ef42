"""What a whole run costs: measured step time on this machine, and an estimate for GPUs.

The CPU figure is arithmetic on measurements (seconds per step, seconds per checkpoint save).
The GPU figures are estimates until a GPU row exists: the step's FLOPs (counted from the
layers, `job.training.capacity`) over a stated share of a stated GPU's peak. The arithmetic is
spelt out in each row's note; change the assumptions here, in one place.

    run seconds = epochs x steps/epoch x seconds/step + checkpoints x seconds/checkpoint
    GPU seconds/step = FLOP/step / (GPUs x peak FLOP/s x utilisation x scaling efficiency)
"""

from __future__ import annotations

import dataclasses

from job.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Gpu:
    name: str
    float32_flops_per_s: float
    source: str


# The long run's GPU (k8s/02-job.yaml: a g2-standard-8 node with one L4). NVIDIA's L4 datasheet:
# 30.3 TFLOP/s float32 (TensorFlow runs float32 convolutions as TF32 on its tensor cores, 60 dense;
# 121 TFLOP/s float16 on tensor cores, dense; 300 GB/s memory).
L4 = Gpu("NVIDIA L4", 30.3e12, "NVIDIA L4 datasheet, float32 (non-tensor) peak")
# Assumed share of the float32 peak a DCGAN step reaches on the GPU (batch norm and activations at
# 336x504 are memory-bound on the L4's 300 GB/s). This CPU reaches 50-85% of its own dense matmul
# peak (README, Benchmarks); 30% is deliberately below that. Mixed precision would add tensor cores.
ASSUMED_GPU_UTILISATION = 0.30
# Assumed efficiency of N GPUs on one node (8 L4s: a g2-standard-96) against N x one GPU: an
# all-reduce of ~11M gradients and synchronised batch norm per step, with the global batch raised
# to keep 16 images per GPU (the images per epoch, and so the FLOPs of the run, stay the same).
ASSUMED_MULTI_GPU_EFFICIENCY = 0.80
# Assumed upload throughput of one checkpoint from a GKE node to a bucket in its region (one
# stream per file, several files in parallel would do better): used only to add the upload to
# the measured local save in the checkpoint rows, which say so.
ASSUMED_GCS_UPLOAD_BYTES_PER_S = 100e6
# Training images of the full public set at 336x504 (covid_ct 2.0.0: 809 found, 777 kept, 663 in
# the patient-held-out train split; `covidct prepare --config 336x504`, measured 2026-11-29).
FULL_TRAIN_IMAGES = 663


@dataclasses.dataclass(frozen=True)
class RunCost:
    """Seconds of a whole run and the arithmetic behind them."""

    seconds: float
    steps: int
    seconds_per_step: float
    checkpoints: int
    seconds_per_checkpoint: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    def arithmetic(self) -> str:
        return (f"{self.steps:,} steps x {self.seconds_per_step:.4g} s + {self.checkpoints} "
                f"checkpoints x {self.seconds_per_checkpoint:.3g} s = {self.hours:,.1f} h")


def run_cost(config: TrainConfig, train_images: int, seconds_per_step: float,
             seconds_per_checkpoint: float = 0.0) -> RunCost:
    """The whole run (`config.epochs`) at a given step time (metrics and samples left out)."""
    steps = config.epochs * (train_images // config.global_batch_size)
    checkpoints = config.epochs // config.checkpoint_every_epochs
    seconds = steps * seconds_per_step + checkpoints * seconds_per_checkpoint
    return RunCost(seconds, steps, seconds_per_step, checkpoints, seconds_per_checkpoint)


def gpu_seconds_per_step(flops_per_step: float, gpus: int = 1, gpu: Gpu = L4) -> float:
    """The estimated step time on `gpus` GPUs (see the assumptions above)."""
    efficiency = 1.0 if gpus == 1 else ASSUMED_MULTI_GPU_EFFICIENCY
    return flops_per_step / (gpus * gpu.float32_flops_per_s * ASSUMED_GPU_UTILISATION * efficiency)


def assumptions(gpus: int, gpu: Gpu = L4) -> str:
    text = (f"estimate: {gpus} x {gpu.name} at {ASSUMED_GPU_UTILISATION:.0%} of "
            f"{gpu.float32_flops_per_s / 1e12:g} TFLOP/s float32 ({gpu.source})")
    if gpus > 1:
        text += f", {ASSUMED_MULTI_GPU_EFFICIENCY:.0%} scaling efficiency (assumed)"
    return text
