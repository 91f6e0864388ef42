"""`TrainConfig`: the single source of every knob of a training run (the config's shape only:
its checks live in `job.config.checks`, which imports this module, never the reverse).

The CLI (`--preset`, `--config FILE`, `--set field=value`), the Ray Tune search space and the
Kubernetes manifests all name these same fields, and all go through `resolve` / `override`, so a
setting is spelt one way everywhere. Defaults follow the seed project's findings: LeakyReLU over
ReLU, learning rate 1e-4 over 1e-3 and 1e-5, no dropout, 11 hidden generator layers and 8 in the
discriminator.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from tfds_covidct.covid_ct.resolutions import RESOLUTIONS

ACTIVATIONS = ("leaky_relu", "relu")
NORMS = ("batch", "none")
LOSSES = ("bce", "hinge")
PRECISIONS = ("float32", "mixed_float16")
XLA_MODES = ("auto", "on", "off")
AUGMENTS = ("translation", "cutout", "color")
# Architectures: each a module of job/training/models/ (its layer plans and builders).
MODELS = ("dcgan",)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every knob of one training run. Names carry their units."""

    # What to train on.
    dataset_config: str = "64"  # a covid_ct builder config: 28, 64, 128, 256, 336x504
    data_dir: str = "data/tfds"  # where `covidct prepare` built it: a folder or gs://
    # Demo phantoms are refused unless this says so (the demo and smoke presets do): the long run
    # must never train on them by accident.
    allow_synthetic_data: bool = False
    # Classes to train on, comma-separated covid_ct label names ("covid", "non_covid"); "" = all.
    labels: str = ""
    # A class-conditional GAN: G draws the class it is given, D judges image and class together
    # (a projection discriminator). Every selected class's scans teach anatomy.
    conditional: bool = False
    # Where everything goes: config.json, checkpoints, metrics, samples. "" -> runs/<name>.
    name: str = "default"
    run_uri: str = ""  # the run folder or gs:// URI; "" -> runs/<name>

    # Models (see job/training/models/ for how depth and stages combine).
    model: str = "dcgan"  # the architecture: one of MODELS, a module of job/training/models/
    latent_dim: int = 100  # length of the generator's noise vector z
    g_depth: int = 11  # hidden layers of the generator: dense + upsampling stages + stride-1 convs
    d_depth: int = 8  # hidden conv layers of the discriminator: downsampling stages + stride-1
    g_filters: int = 64  # generator width at full resolution; doubles per stage towards the input
    d_filters: int = 64  # discriminator width at full resolution; doubles per stage
    max_filters: int = 512  # cap on either model's width (filters per conv layer)
    activation: str = "leaky_relu"  # hidden-layer activation: leaky_relu or relu
    dropout: float = 0.0  # dropout rate after each hidden layer of D (0 = off)
    norm: str = "batch"  # normalisation of hidden layers: batch or none

    # Objective and optimiser.
    loss: str = "bce"  # the tutorial's non-saturating BCE, or hinge
    r1_gamma: float = 0.0  # R1 gradient penalty on real images (0 = off)
    lecam_weight: float = 0.0  # LeCam regularisation of D (Tseng et al. 2021), its weight (0 = off)
    g_lr: float = 1e-4  # generator Adam learning rate
    d_lr: float = 1e-4  # discriminator Adam learning rate
    adam_beta_1: float = 0.5  # Adam's first-moment decay (DCGAN: 0.5)
    adam_beta_2: float = 0.999  # Adam's second-moment decay

    # Schedule.
    global_batch_size: int = 32  # images per step over all replicas (each gets an equal share)
    epochs: int = 500  # passes over the training split; the run ends after this many
    augment: str = "translation,cutout,color"  # DiffAugment policy, comma-separated, "" = off
    # EMA generator (samples, metrics, export), as in StyleGAN2-ADA: a half-life in thousands of
    # images, ramped up early (half-life <= ema_rampup x images so far) so short runs show progress.
    ema_kimg: float = 10.0  # EMA half-life in kimg; 0 = off: the EMA generator is a copy of G
    ema_rampup: float = 0.05  # early half-life <= ema_rampup x images seen (0 = no ramp-up)

    # Execution.
    precision: str = "float32"  # float32, or mixed_float16 (GPUs; with loss scaling)
    # jit_compile the forward/backward (1.2-1.9x on the bench CPU). XLA cannot compile batch norm
    # synchronised across replicas, so "on" normalises per replica; "auto" is XLA on one replica
    # (where the two are the same) or without batch norm, and synchronised batch norm otherwise.
    xla: str = "auto"
    seed: int = 0  # seeds weights, noise, augmentation and data order
    deterministic: bool = False  # op determinism: a resumed run ends with the same weights
    cpu_replicas: int = 0  # >0 on a CPU-only machine: split the CPU into N logical devices
    # Training processes, one per node, each with its own GPUs (or one CPU replica): >1 trains
    # under MultiWorkerMirroredStrategy, every process told its place by TF_CONFIG.
    num_workers: int = 1
    gpus_per_worker: int = 0  # GPUs each worker asks Ray Train for (0: CPU, one replica per worker)
    cpus_per_worker: int = 1  # CPUs each worker asks Ray Train for (its input pipeline runs on them)
    # A collective (the gradients' all-reduce) that waits longer than this for a lost worker ends
    # the run with exit 1 (retryable) instead of hanging; it must outlast the first step's tracing.
    collective_timeout_seconds: float = 600.0

    # Intervals, in epochs.
    sample_every_epochs: int = 10  # write the fixed-noise sample grid every N epochs
    checkpoint_every_epochs: int = 10  # save a checkpoint every N epochs (and at the end)
    metrics_every_epochs: int = 10  # score SWD, intensity, diversity, hold-out every N epochs
    keep_checkpoints: int = 3  # newest checkpoints kept (the best one is always kept)
    # Also checkpoint mid-epoch after this many minutes of training (0 = only by epoch): a spot
    # reclaim then costs at most this much work, whatever the epoch length.
    checkpoint_every_minutes: float = 20.0
    # Seconds a preempted pod may spend on a fresh SIGTERM checkpoint (GKE spot: ~15 s in all).
    # If the save and upload cannot fit, the newest checkpoint already in the run URI counts.
    grace_seconds: float = 12.0

    # Metrics.
    metric_num_images: int = 256  # generated and real images per SWD/FID estimate
    inception_weights: str = ""  # "" = no FID/KID; "imagenet" or a path/URI of a weights file

    # Storage: how long uploads keep retrying before the run fails.
    storage_retry_seconds: float = 120.0  # how long uploads keep retrying before the run fails
    # One writer per run URI (`job.storage.lease`): the writer's lease lapses this long after its
    # last renewal (renewed every third of it); a second writer waits up to lease_wait_seconds
    # (longer than a lease, so a killed writer's replacement goes on by itself), then exits 1
    # naming the holder. `covidct train --takeover` takes it at once from a writer known dead.
    lease_seconds: float = 60.0
    lease_wait_seconds: float = 120.0  # a second writer waits this long for the lease, then exits 1

    @property
    def height(self) -> int:
        return RESOLUTIONS[self.dataset_config][0]

    @property
    def width(self) -> int:
        return RESOLUTIONS[self.dataset_config][1]

    @property
    def resolved_run_uri(self) -> str:
        return self.run_uri or f"runs/{self.name}"

    @property
    def label_names(self) -> tuple[str, ...]:
        """The selected classes ("" = every class of the dataset: an empty tuple)."""
        return tuple(p.strip() for p in self.labels.split(",") if p.strip())

    @property
    def augment_policy(self) -> tuple[str, ...]:
        return tuple(p for p in self.augment.split(",") if p)

    def ema_beta(self, images_seen: int) -> float:
        """The EMA's decay for the next step, after `images_seen` training images."""
        if self.ema_kimg <= 0:
            return 0.0
        half_life = self.ema_kimg * 1000
        if self.ema_rampup > 0:
            half_life = min(half_life, images_seen * self.ema_rampup)
        return 0.5 ** (self.global_batch_size / max(half_life, 1e-8))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

# Fields a run may change when it resumes (recorded in the run's config history). Every other
# field is the run's identity: it shapes the checkpoint (models, precision, dropout) or the data
# (dataset, data_dir, seed), so a resumed run that changes one is refused.
RESUMABLE_FIELDS = frozenset({
    "name", "run_uri", "epochs", "sample_every_epochs", "checkpoint_every_epochs",
    "metrics_every_epochs", "keep_checkpoints", "checkpoint_every_minutes", "grace_seconds",
    "metric_num_images", "inception_weights", "storage_retry_seconds", "cpu_replicas", "xla",
    "deterministic", "allow_synthetic_data", "g_lr", "d_lr", "adam_beta_1", "adam_beta_2",
    "augment", "r1_gamma", "global_batch_size", "ema_kimg", "ema_rampup", "loss",
    "lease_seconds", "lease_wait_seconds", "num_workers", "gpus_per_worker", "cpus_per_worker",
    "collective_timeout_seconds",
})


def identity_changes(recorded: Mapping[str, Any], config: TrainConfig) -> dict[str, tuple]:
    """{field: (recorded, requested)} for every identity field `config` changes.

    `recorded` is a run's config.json; fields it lacks (written by an older version) count as
    their defaults.
    """
    changes = {}
    for name, field in FIELDS.items():
        if name in RESUMABLE_FIELDS:
            continue
        old = recorded.get(name, field.default)
        if old != getattr(config, name):
            changes[name] = (old, getattr(config, name))
    return changes
