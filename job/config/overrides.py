"""Building a `TrainConfig`: presets, config files and `--set` through one override path.

`resolve` (the CLI) and `from_json` (a run's config.json) end in `job.config.checks.validate`,
so a config that leaves here is checked; sweeps and benches build theirs with `override`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import typing
from typing import Any, Mapping

from job.config.checks import validate
from job.config.presets import PRESETS
from job.config.schema import FIELDS, TrainConfig
from job.errors import ConfigError


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
