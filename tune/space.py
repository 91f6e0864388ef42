"""The search space: which `TrainConfig` fields a sweep varies, and how.

A space maps config field names to dimensions. The default space asks the seed project's own
questions (activation, learning rate, depths, dropout, batch, augmentation); a user replaces it
with a JSON/YAML file in the same shape:

    activation: [relu, leaky_relu]            # a list: one of these per trial
    g_lr: {loguniform: [1.0e-5, 1.0e-3]}
    d_lr: {same_as: g_lr}                     # tied to g_lr
    dropout: {choice: [0.0, 0.1]}
    g_depth: {grid: [5, 7]}                   # every value, num_samples times each
    epochs: 50                                # the same for every trial

Kinds: choice (or a plain list), grid, uniform, loguniform, randint (upper bound exclusive, as in
Ray), same_as, and constants. Every key must be a config field and every value the space can
draw (each integer of a randint, not only its ends) must pass the config's own override and
validation before a single trial starts (`check`); this module is pure
Python, Ray is only touched by `to_param_space`; PBT's view of a space is `tune.pbt`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Mapping

from job.config import FIELDS, TrainConfig, load_file, override, upsampling_stages, validate
from job.errors import ConfigError

KINDS = ("choice", "grid", "uniform", "loguniform", "randint", "same_as", "constant")
# Set per trial by the sweep itself: a space cannot vary them.
RESERVED = {
    "name": "each trial is named after its trial id",
    "run_uri": "each trial writes to <sweep>/<trial id>/run",
    "cpu_replicas": "it follows --cpus-per-trial (or --cpu-replicas) for every trial alike",
}
# One value for every trial, in the space file or as --set: Tune holds one resource request for
# all trials, so a trial's workers are the sweep's (`split_fixed` folds them into the base).
FIXED = ("num_workers", "gpus_per_worker", "cpus_per_worker")
# Above this many combinations, each field's values are checked alone (`check`).
MAX_COMBINATIONS = 20_000
# An integer range wider than this is checked at this many values, half at each end (`drawable`).
MAX_INTEGERS = 10_000


@dataclasses.dataclass(frozen=True)
class Dim:
    """One field's dimension: `kind` and its arguments (values, bounds or the tied field)."""

    kind: str
    args: tuple

    def describe(self) -> str:
        if self.kind == "constant":
            return repr(self.args[0])
        if self.kind == "same_as":
            return f"= {self.args[0]}"
        return f"{self.kind}{list(self.args)}"


Space = dict[str, Dim]


def choice(*values) -> Dim:
    return Dim("choice", tuple(values))


def default_space(base: TrainConfig, replicas: int, train_images: int | None = None) -> Space:
    """The seed's question for `base`'s resolution.

    Learning rates are tied (`d_lr` follows `g_lr`): the seed compared one learning rate for both
    networks (1e-3, 1e-4, 1e-5), and with random search every extra continuous dimension thins
    out the samples per question. A space file that gives `d_lr` its own range unties them.
    Depths run from the least the resolution allows to the base config's own; batch sizes halve
    and double the base's, keeping those the replicas and the dataset can feed.
    """
    stages = upsampling_stages(base.height, base.width)
    batches = [b for b in (base.global_batch_size // 2, base.global_batch_size, base.global_batch_size * 2)
               if b % replicas == 0 and b // replicas >= 2 and (train_images is None or b <= train_images)]
    return {
        "activation": choice("relu", "leaky_relu"),
        "g_lr": Dim("loguniform", (1e-5, 1e-3)),
        "d_lr": Dim("same_as", ("g_lr",)),
        "g_depth": choice(*sorted({stages + 1, stages + 3, base.g_depth})),
        "d_depth": choice(*sorted({stages, stages + 2, base.d_depth})),
        "dropout": choice(0.0, 0.1),
        "global_batch_size": choice(*(batches or [base.global_batch_size])),
        "augment": choice("", "translation,cutout", "translation,cutout,color"),
    }


def load_space(path: str) -> Space:
    """Read a space file; an unknown field or a malformed dimension is a ConfigError naming it."""
    return parse_space(load_file(path), source=str(path))


def parse_space(data: Mapping[str, Any], source: str = "the search space") -> Space:
    if not data:
        raise ConfigError("--space", f"{source} names no field")
    space = {}
    for field, spec in data.items():
        if field not in FIELDS:
            close = [f for f in FIELDS if f.startswith(str(field)[:3])]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(field, f"unknown field in {source}{hint}")
        if field in RESERVED:
            raise ConfigError(field, f"cannot be searched in {source}: {RESERVED[field]}")
        space[field] = _parse_dim(field, spec, source)
        if field in FIXED and space[field].kind != "constant":
            raise ConfigError(field, f"cannot be searched in {source}: every trial has the same "
                                     f"workers; give one value ({field}: 2) or --set {field}=2")
    for field, dim in space.items():
        if dim.kind == "same_as" and (dim.args[0] not in space or space[dim.args[0]].kind == "same_as"):
            raise ConfigError(field, f"same_as {dim.args[0]!r} in {source}: that field must be searched "
                                     "in the same space (and not be tied itself)")
    return space


def split_fixed(space: Space) -> tuple[Space, dict]:
    """The space without its FIXED fields, and their one value each (for the sweep's base)."""
    fixed = {f: d.args[0] for f, d in space.items() if f in FIXED}
    return {f: d for f, d in space.items() if f not in FIXED}, fixed


def _parse_dim(field: str, spec: Any, source: str) -> Dim:
    if isinstance(spec, list):
        spec = {"choice": spec}
    if not isinstance(spec, dict):
        return Dim("constant", (_coerce(field, spec),))
    if len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise ConfigError(field, f"in {source}: expected a value, a list, or one of "
                                 f"{{{', '.join(KINDS)}: ...}}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind == "same_as":
        return Dim(kind, (str(args),))
    if kind == "constant":
        return Dim(kind, (_coerce(field, args),))
    if not isinstance(args, list) or not args:
        raise ConfigError(field, f"in {source}: {kind} needs a non-empty list, got {args!r}")
    if kind in ("choice", "grid"):
        return Dim(kind, tuple(_coerce(field, v) for v in args))
    if len(args) != 2:
        raise ConfigError(field, f"in {source}: {kind} needs [low, high], got {args!r}")
    low, high = (_coerce(field, v) for v in args)
    wanted = int if kind == "randint" else float
    if type(low) is not wanted:  # uniform draws of an int field would not be ints
        raise ConfigError(field, f"in {source}: {kind} needs {'an integer' if wanted is int else 'a float'} "
                                 "field (use a list of values otherwise)")
    if not low < high or (kind == "loguniform" and low <= 0):
        raise ConfigError(field, f"in {source}: {kind} bounds must satisfy "
                                 f"{'0 < ' if kind == 'loguniform' else ''}low < high, got {args!r}")
    return Dim(kind, (low, high))


def _coerce(field: str, value: Any) -> Any:
    """The field's own type, as the CLI would coerce it (YAML reads 1e-5 as a string)."""
    return getattr(override(TrainConfig(), {field: value}), field)


def candidates(dim: Dim) -> tuple:
    """The values that bound what `dim` can draw: every choice, or both ends of a range."""
    if dim.kind in ("uniform", "loguniform"):
        return dim.args
    if dim.kind == "randint":
        return dim.args[0], dim.args[1] - 1
    return dim.args


def drawable(dim: Dim) -> tuple:
    """Every value `dim` can draw, as far as validation can tell them apart.

    Lists and integer ranges: each value (an integer range wider than MAX_INTEGERS: its first
    and last MAX_INTEGERS // 2 values; integer rules are bounds and divisibility by the replica
    count, which both ends already show). Float ranges: their ends, since every float rule is an
    interval (`job.config.checks`), which holds everything between two values it holds.
    """
    if dim.kind == "randint":
        low, high = dim.args
        if high - low > MAX_INTEGERS:
            half = MAX_INTEGERS // 2
            return tuple(range(low, low + half)) + tuple(range(high - half, high))
        return tuple(range(low, high))
    return candidates(dim)


def combinations(space: Space, values=candidates) -> list[dict]:
    """Every combination of each free field's `values`, ties resolved."""
    free = {f: values(d) for f, d in space.items() if d.kind != "same_as"}
    return [_tied(space, dict(zip(free, combo))) for combo in itertools.product(*free.values())]


def _tied(space: Space, combo: dict) -> dict:
    return {**combo, **{f: combo[d.args[0]] for f, d in space.items() if d.kind == "same_as"}}


def check(space: Space, base: TrainConfig, replicas: int) -> list[TrainConfig]:
    """Validate on `base` for `replicas` every value the space can draw; returns the configs.

    Every combination of every drawable value when there are at most MAX_COMBINATIONS; else
    every combination of the corners (each field's ends), and each field's every value with the
    others at the first corner (fields that interact, such as a depth and the resolution, meet
    at the corners; a single bad draw, such as an odd batch on 2 replicas, is found alone).

    Raises:
        ConfigError (exit 2): names the field and the combination holding a value that cannot
            train (a depth too shallow for the resolution, a batch the replicas cannot split).
    """
    free = [d for d in space.values() if d.kind != "same_as"]
    if math.prod(len(drawable(d)) for d in free) <= MAX_COMBINATIONS:
        combos = combinations(space, drawable)
    else:
        corners = (combinations(space) if math.prod(len(candidates(d)) for d in free) <= MAX_COMBINATIONS
                   else [_tied(space, {f: candidates(d)[0] for f, d in space.items() if d.kind != "same_as"})])
        combos = corners + [_tied(space, {**corners[0], f: v}) for f, d in space.items()
                            if d.kind != "same_as" for v in drawable(d)]
    configs = []
    for combo in combos:
        try:
            configs.append(validate(override(base, combo), num_replicas=replicas))
        except ConfigError as error:
            shown = ", ".join(f"{k}={v!r}" for k, v in combo.items())
            reason = str(error).removeprefix(f"config field '{error.field}': ")
            raise ConfigError(error.field, f"{reason} (search space: {shown})") from None
    return configs


def grid_points(space: Space) -> int:
    """How many trials one sample of the space expands to (the product of its grids)."""
    return math.prod(len(d.args) for d in space.values() if d.kind == "grid")


def describe(space: Space) -> str:
    return ", ".join(f"{f} {d.describe()}" for f, d in space.items())


def to_param_space(space: Space) -> dict:
    """The Ray Tune `param_space` for `space`."""
    from ray import tune

    return {f: _domain(tune, d) for f, d in space.items()}


def _domain(tune, dim: Dim):
    if dim.kind == "constant":
        return dim.args[0]
    if dim.kind == "same_as":
        return tune.sample_from(_Tied(dim.args[0]))
    if dim.kind == "grid":
        return tune.grid_search(list(dim.args))
    if dim.kind == "choice":
        return tune.choice(list(dim.args))
    return getattr(tune, dim.kind)(*dim.args)  # uniform, loguniform, randint


@dataclasses.dataclass(frozen=True)
class _Tied:
    """`sample_from` callable copying another field's sampled value (picklable, unlike a lambda)."""

    field: str

    def __call__(self, config: dict) -> Any:
        return config[self.field]
