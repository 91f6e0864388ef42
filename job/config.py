"""`TrainConfig`: the single source of every knob of a training run.

The CLI (`--preset`, `--config FILE`, `--set field=value`), the Ray Tune search space and the
Kubernetes manifests all name these same fields, and all go through `resolve` / `override`, so a
setting is spelt one way everywhere. Defaults follow the seed project's findings: LeakyReLU over
ReLU, learning rate 1e-4 over 1e-3 and 1e-5, no dropout, 11 hidden generator layers and 8 in the
discriminator.

    covidct train --preset smoke --dry-run     # prints the resolved config, builds nothing
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import typing
from typing import Any, Mapping

from job.errors import ConfigError
from job.presets import PRESETS
from tfds_covidct.covid_ct.resolutions import RESOLUTIONS

ACTIVATIONS = ("leaky_relu", "relu")
NORMS = ("batch", "none")
LOSSES = ("bce", "hinge")
PRECISIONS = ("float32", "mixed_float16")
XLA_MODES = ("auto", "on", "off")
AUGMENTS = ("translation", "cutout", "color")
MAX_UPSAMPLING_STAGES = 6  # a 4-8 px seed map up to 511 px on the short side


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
    run_uri: str = ""

    # Models (see job/training/layer_plan.py for how depth and stages combine).
    latent_dim: int = 100
    g_depth: int = 11  # hidden layers of the generator: dense + upsampling stages + stride-1 convs
    d_depth: int = 8  # hidden conv layers of the discriminator: downsampling stages + stride-1
    g_filters: int = 64  # generator width at full resolution; doubles per stage towards the input
    d_filters: int = 64  # discriminator width at full resolution; doubles per stage
    max_filters: int = 512
    activation: str = "leaky_relu"
    dropout: float = 0.0
    norm: str = "batch"

    # Objective and optimiser.
    loss: str = "bce"  # the tutorial's non-saturating BCE, or hinge
    r1_gamma: float = 0.0  # R1 gradient penalty on real images (0 = off)
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    adam_beta_1: float = 0.5
    adam_beta_2: float = 0.999

    # Schedule.
    global_batch_size: int = 32
    epochs: int = 500
    augment: str = "translation,cutout,color"  # DiffAugment policy, comma-separated, "" = off
    # EMA generator (samples, metrics, export), as in StyleGAN2-ADA: a half-life in thousands of
    # images, ramped up early (half-life <= ema_rampup x images so far) so short runs show progress.
    ema_kimg: float = 10.0  # 0 = off: the EMA generator is a copy of the generator
    ema_rampup: float = 0.05

    # Execution.
    precision: str = "float32"
    # jit_compile the forward/backward (1.2-1.9x on the bench CPU). XLA cannot compile batch norm
    # synchronised across replicas, so "on" normalises per replica; "auto" is XLA on one replica
    # (where the two are the same) or without batch norm, and synchronised batch norm otherwise.
    xla: str = "auto"
    seed: int = 0
    deterministic: bool = False  # op determinism: a resumed run ends with the same weights
    cpu_replicas: int = 0  # >0 on a CPU-only machine: split the CPU into N logical devices

    # Intervals, in epochs.
    sample_every_epochs: int = 10
    checkpoint_every_epochs: int = 10
    metrics_every_epochs: int = 10
    keep_checkpoints: int = 3
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
    storage_retry_seconds: float = 120.0

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


def upsampling_stages(height: int, width: int) -> int:
    """How many 2x stages link a small seed map to H×W, whatever H and W's factors are.

    The most stages that keep the seed map's short side at 4 px or more: its sides are
    ceil(H / 2^s) x ceil(W / 2^s), so the short side is 4-8 px (28 -> 7x7, 64 -> 4x4,
    336x504 -> 6x8). Sides that 2^s does not divide are reached by cropping the generator's map
    where they first divide (`job.training.layer_plan.geometry`); the discriminator halves with
    'same' padding down to the same few pixels. At most `MAX_UPSAMPLING_STAGES`.
    """
    short = min(height, width)
    stages = 0
    while stages < MAX_UPSAMPLING_STAGES and short >= 4 * 2 ** (stages + 1):
        stages += 1
    return stages


def _coerce(name: str, value: Any) -> Any:
    """Turn a value from the CLI, a file or a sweep into the field's type, or say why not."""
    kind = typing.get_type_hints(TrainConfig)[name]
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                lowered = text.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return lowered in ("true", "1", "yes")
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError:
            raise ConfigError(name, f"expected {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind is str and isinstance(value, bool):
        # YAML 1.1 (PyYAML) reads on/off/yes/no as booleans: `xla: off` arrives as False.
        if name == "xla":
            return "on" if value else "off"
        raise ConfigError(name, f"YAML read the value as the boolean {value}; quote it (\"...\")")
    if kind is str and not isinstance(value, str):
        return str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(name, f"expected {kind.__name__}, got {value!r}")
    return value


def override(config: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """Return `config` with `values` applied; an unknown field or a wrong type is a ConfigError.

    This is the one override path: CLI `--set`, config files, presets and Ray Tune trials use it.
    """
    changes = {}
    for name, value in values.items():
        if name not in FIELDS:
            close = [f for f in FIELDS if f.startswith(name[:3])]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(name, f"unknown field{hint}")
        changes[name] = _coerce(name, value)
    return dataclasses.replace(config, **changes)


def parse_set(items: list[str]) -> dict[str, str]:
    """Parse `field=value` strings from `--set`."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(item, "expected --set field=value")
        out[name.strip()] = value
    return out


def load_file(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a JSON or YAML file of `field: value` pairs."""
    import yaml  # yaml is a superset of JSON, so one parser reads both.

    p = pathlib.Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError("--config", f"file not found: {p}") from None
    except yaml.YAMLError as e:
        raise ConfigError("--config", f"{p} is not valid JSON/YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{p} must hold a mapping of field: value")
    return data


def validate(config: TrainConfig, num_replicas: int | None = None) -> TrainConfig:
    """Check every value before anything is built; raise one ConfigError naming the field.

    The checks live in `job.validation` (this module is the config's shape and its override
    path); `num_replicas` adds the checks that need the device count.
    """
    from job.validation import check

    return check(config, num_replicas)


def resolve(
    preset: str | None = None,
    config_file: str | None = None,
    sets: list[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Preset, then file, then `--set`, then `extra` (e.g. `--run`): the one way to build a config."""
    name = preset or "default"
    if name not in PRESETS:
        raise ConfigError("--preset", f"{name!r} is not one of {sorted(PRESETS)}")
    config = override(TrainConfig(), PRESETS[name].overrides)
    if config_file:
        config = override(config, load_file(config_file))
    if sets:
        config = override(config, parse_set(sets))
    if extra:
        config = override(config, {k: v for k, v in extra.items() if v is not None})
    return validate(config)


def from_json(text: str) -> TrainConfig:
    """Read a config.json written by a run; unknown fields (from a newer version) are an error."""
    return validate(override(TrainConfig(), json.loads(text)))
