"""Every check of a `TrainConfig`, before anything is built: one ConfigError naming the field.

Reads the schema and the image geometry; neither imports this module (flax's and big_vision's
configs import nothing of the code that checks them).

A config is validated once, where it enters (the CLI's `resolve`, a run's `from_json`, a sweep
trial's config): `validate` marks the (frozen, so still valid) instance, and `checked` - what
`fit` calls - passes a marked config on as it is. Any change (`override`, `dataclasses.replace`)
makes a new, unmarked instance. The checks that need the device count (`check_replicas`) run
once more where it is known: the run's plan.
"""

from __future__ import annotations

import math

from job.config.geometry import geometry
from job.config.schema import (
    ACTIVATIONS, AUGMENTS, LOSSES, MODELS, NORMS, PRECISIONS, RESOLUTIONS, XLA_MODES, TrainConfig,
)
from job.errors import ConfigError
from tfds_covidct.covid_ct.sources import LABELS


_MARK = "_validated"  # an instance attribute, not a field: no override, file or --set can set it


def validate(config: TrainConfig, num_replicas: int | None = None) -> TrainConfig:
    """Check every value before anything is built, then mark `config` as validated.

    `num_replicas` adds `check_replicas`. Returns `config` itself.

    Raises:
        ConfigError (exit 2): the first bad value, naming its field.
    """
    _check_fields(config)
    if num_replicas is not None:
        check_replicas(config, num_replicas)
    object.__setattr__(config, _MARK, True)  # frozen: the values the checks saw cannot change
    return config


def checked(config: TrainConfig) -> TrainConfig:
    """`config` as it is if `validate` passed it, else validated now (a config built by
    `override` in a bench or a test); `fit` starts with this instead of a second validation."""
    return config if getattr(config, _MARK, False) else validate(config)


def check_name(field: str, name: str) -> None:
    """A run's or a sweep's name becomes one folder of a URI: refuse '', '.', '..', '/' and
    surrounding spaces (a name of '..' would write beside the runs folder, not in it).

    Raises:
        ConfigError (exit 2), naming `field` (e.g. "name", or a flag such as "--name").
    """
    if name != name.strip() or name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ConfigError(field, f"{name!r} must be a folder name: not empty, '.' or '..', no "
                          "slash or backslash, no surrounding spaces")


def check_replicas(config: TrainConfig, num_replicas: int) -> None:
    """The checks that need the replica count, once it is known (the run's plan, a sweep's).

    Raises:
        ConfigError (exit 2): a global batch the replicas cannot split evenly, or one that leaves
            batch norm fewer than 2 examples per replica.
    """
    gb = config.global_batch_size
    if gb % num_replicas:
        raise ConfigError("global_batch_size", f"{gb} is not divisible by the {num_replicas} replicas")
    if config.norm == "batch" and gb // num_replicas < 2:
        raise ConfigError("global_batch_size", f"{gb // num_replicas} sample(s) per replica; batch "
                          "normalisation needs at least 2")


def _check_fields(config: TrainConfig) -> None:
    """Every check that needs the config alone."""
    c = config
    if c.dataset_config not in RESOLUTIONS:
        raise ConfigError("dataset_config", f"{c.dataset_config!r} is not one of {sorted(RESOLUTIONS)}")
    choices = {"model": MODELS, "activation": ACTIVATIONS, "norm": NORMS, "loss": LOSSES,
               "precision": PRECISIONS, "xla": XLA_MODES}
    for name, allowed in choices.items():
        if getattr(c, name) not in allowed:
            raise ConfigError(name, f"{getattr(c, name)!r} is not one of {list(allowed)}")
    for part in c.augment_policy:
        if part not in AUGMENTS:
            raise ConfigError("augment", f"{part!r} is not one of {list(AUGMENTS)} (comma-separated)")
    unknown = [n for n in c.label_names if n not in LABELS]
    if unknown or len(set(c.label_names)) != len(c.label_names):
        raise ConfigError("labels", f"{c.labels!r}: give classes of {list(LABELS)}, comma-separated, "
                          "each once (empty: every class)")
    positive = ("latent_dim", "g_filters", "d_filters", "max_filters", "global_batch_size", "epochs",
                "sample_every_epochs", "checkpoint_every_epochs", "metrics_every_epochs",
                "keep_checkpoints", "metric_num_images")
    for name in positive:
        if getattr(c, name) <= 0:
            raise ConfigError(name, f"must be positive, got {getattr(c, name)}")
    for name in ("g_lr", "d_lr"):
        value = getattr(c, name)
        if not (math.isfinite(value) and 0 < value < 1):
            raise ConfigError(name, f"must be a learning rate in (0, 1), got {value}")
    for name in ("adam_beta_1", "adam_beta_2"):
        if not 0 <= getattr(c, name) < 1:
            raise ConfigError(name, f"must be in [0, 1), got {getattr(c, name)}")
    if c.ema_kimg < 0:
        raise ConfigError("ema_kimg", f"must be >= 0 (0 = off), got {c.ema_kimg}")
    if not 0 <= c.ema_rampup <= 1:
        raise ConfigError("ema_rampup", f"must be in [0, 1], got {c.ema_rampup}")
    if not 0 <= c.dropout < 1:
        raise ConfigError("dropout", f"must be in [0, 1), got {c.dropout}")
    if c.r1_gamma < 0:
        raise ConfigError("r1_gamma", f"must be >= 0, got {c.r1_gamma}")
    if not (c.lecam_weight >= 0 and math.isfinite(c.lecam_weight)):
        raise ConfigError("lecam_weight", f"must be a finite number >= 0, got {c.lecam_weight}")
    if c.r1_gamma > 0 and c.norm == "batch":
        # R1 penalises |dD(x_i)/dx_i|^2 per real image; through batch statistics the gradient of
        # the summed logits also carries dD(x_j)/dx_i (about 6% off at initialisation).
        raise ConfigError("r1_gamma", f"R1 (r1_gamma={c.r1_gamma:g}) needs a discriminator "
                          "without batch norm: through the batch statistics the penalty mixes "
                          "examples instead of taking each real image's own gradient; set "
                          "norm=none, or r1_gamma=0")
    if c.cpu_replicas < 0:
        raise ConfigError("cpu_replicas", f"must be >= 0, got {c.cpu_replicas}")
    if c.num_workers < 1:
        raise ConfigError("num_workers", f"must be >= 1, got {c.num_workers}")
    if c.gpus_per_worker < 0 or c.cpus_per_worker < 1:
        name = "gpus_per_worker" if c.gpus_per_worker < 0 else "cpus_per_worker"
        raise ConfigError(name, f"must be >= {0 if name == 'gpus_per_worker' else 1}, got {getattr(c, name)}")
    if c.num_workers > 1 and c.cpu_replicas > 1:
        # MultiWorkerMirroredStrategy mirrors over a worker's GPUs or its first CPU only.
        raise ConfigError("cpu_replicas", f"a run of {c.num_workers} workers has one CPU replica "
                          f"per worker, got cpu_replicas={c.cpu_replicas}")
    if not (c.collective_timeout_seconds > 0 and math.isfinite(c.collective_timeout_seconds)):
        raise ConfigError("collective_timeout_seconds", f"must be a finite number of seconds > 0, "
                          f"got {c.collective_timeout_seconds}")
    for name in ("checkpoint_every_minutes", "grace_seconds"):
        if getattr(c, name) < 0:
            raise ConfigError(name, f"must be >= 0, got {getattr(c, name)}")
    if c.storage_retry_seconds < 0:
        raise ConfigError("storage_retry_seconds", f"must be >= 0, got {c.storage_retry_seconds}")
    if c.lease_seconds <= 0 or c.lease_wait_seconds < 0:
        raise ConfigError("lease_seconds" if c.lease_seconds <= 0 else "lease_wait_seconds",
                          f"must be > 0 and >= 0, got {c.lease_seconds} and {c.lease_wait_seconds}")
    geo = geometry(c.height, c.width)
    stages = geo.stages
    if stages == 0:
        raise ConfigError("dataset_config", f"{c.height}x{c.width} allows no 2x upsampling stage "
                          "(the short side must be at least 8 px)")
    seed = f"{geo.seed[0]}x{geo.seed[1]}"
    for name, needed in (("g_depth", stages + 1), ("d_depth", stages)):
        if getattr(c, name) < needed:
            raise ConfigError(
                name,
                f"{getattr(c, name)} hidden layers cannot reach {c.height}x{c.width}: it needs at "
                f"least {needed} (one per 2x stage from the {seed} seed map"
                + (", plus the dense projection)" if name == "g_depth" else ")"),
            )
    check_name("name", c.name)
