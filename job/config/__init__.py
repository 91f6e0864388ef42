"""The training config, one way: schema -> geometry -> checks -> presets -> overrides.

- `schema`: `TrainConfig` (every knob of a run) and its choice tuples; imports nothing that
  checks or builds it;
- `geometry`: the image's 2x stages, seed map and crop (pure arithmetic, no TensorFlow);
- `checks`: `validate`, every check, reading the schema and the geometry;
- `presets`: the presets as data;
- `overrides`: `resolve` / `override` / `from_json`, the one path from a preset, a file or
  `--set` to a config.

    covidct train --preset smoke --dry-run     # prints the resolved config, builds nothing
"""

from job.config.checks import check_name, check_replicas, checked, validate
from job.config.geometry import MAX_UPSAMPLING_STAGES, upsampling_stages
from job.config.overrides import from_json, load_file, override, parse_set, resolve
from job.config.presets import PRESETS, Preset
from job.config.schema import (
    ACTIVATIONS, AUGMENTS, FIELDS, LOSSES, MODELS, NORMS, PRECISIONS, RESOLUTIONS, RESUMABLE_FIELDS,
    XLA_MODES, TrainConfig, identity_changes,
)
from job.errors import ConfigError

__all__ = [
    "ACTIVATIONS", "AUGMENTS", "FIELDS", "LOSSES", "MODELS", "NORMS", "PRECISIONS", "RESOLUTIONS",
    "RESUMABLE_FIELDS", "XLA_MODES", "MAX_UPSAMPLING_STAGES", "PRESETS", "ConfigError", "Preset",
    "TrainConfig", "check_name", "check_replicas", "checked", "from_json", "identity_changes",
    "load_file", "override", "parse_set", "resolve", "upsampling_stages", "validate",
]
