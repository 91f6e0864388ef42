"""The config: presets, overrides, validation, and the CLI's clean refusal of bad values."""

import json
import subprocess
import sys

import pytest

from job import config as C
from job.errors import ConfigError


@pytest.mark.parametrize("preset", sorted(C.PRESETS))
def test_every_preset_resolves_and_validates(preset):
    config = C.resolve(preset)
    assert (config.height, config.width) == C.RESOLUTIONS[config.dataset_config]
    assert config.g_depth >= C.upsampling_stages(config.height, config.width) + 1


def test_defaults_follow_the_seed_findings():
    d = C.TrainConfig()
    assert (d.activation, d.g_lr, d.d_lr, d.dropout, d.g_depth, d.d_depth) == (
        "leaky_relu", 1e-4, 1e-4, 0.0, 11, 8)
    assert C.resolve("seed336x504").dataset_config == "336x504"
    assert C.resolve("seed336x504").epochs == 2250


def test_set_coerces_strings_to_field_types():
    config = C.resolve("smoke", sets=["epochs=7", "deterministic=true", "g_lr=3e-4", "augment="])
    assert config.epochs == 7 and config.deterministic is True and config.g_lr == 3e-4
    assert config.augment_policy == ()


def test_later_sources_override_earlier(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 9\nlatent_dim: 16\n")
    config = C.resolve("smoke", str(path), ["epochs=11"], {"run_uri": "runs/x"})
    assert (config.epochs, config.latent_dim, config.resolved_run_uri) == (11, 16, "runs/x")


@pytest.mark.parametrize(
    "sets, field",
    [
        (["g_lr=-1e-4"], "g_lr"),
        (["d_lr=0"], "d_lr"),
        (["activation=swish"], "activation"),
        (["nonsense=1"], "nonsense"),
        (["epochs=ten"], "epochs"),
        (["g_depth=3"], "g_depth"),  # 64x64 needs 4 upsampling stages plus the dense layer
        (["d_depth=2"], "d_depth"),
        (["dataset_config=100"], "dataset_config"),
        (["augment=translation,rotate"], "augment"),
        (["ema_kimg=-1"], "ema_kimg"),
        (["xla=true"], "xla"),  # auto, on or off
        (["global_batch_size=0"], "global_batch_size"),
        (["model=resnet"], "model"),  # one of MODELS: a module of job/training/models/
        (["name=.."], "name"),  # a folder name: '..' would write beside runs/, not in it
        (["name=a/b"], "name"),
        (["name=."], "name"),
    ],
)
def test_bad_values_name_the_field(sets, field):
    with pytest.raises(ConfigError) as e:
        C.resolve("default", sets=sets)
    assert e.value.field == field
    assert field in str(e.value)


def test_batch_must_split_over_replicas():
    config = C.resolve("smoke", sets=["global_batch_size=16"])
    with pytest.raises(ConfigError, match="global_batch_size.*3 replicas"):
        C.validate(config, num_replicas=3)
    with pytest.raises(ConfigError, match="at least 2"):
        C.validate(C.override(config, {"global_batch_size": 2}), num_replicas=2)
    C.validate(C.override(config, {"global_batch_size": 2, "norm": "none"}), num_replicas=2)


def test_upsampling_stages_reach_every_builder_config():
    assert C.upsampling_stages(28, 28) == 2  # 7x7 seed, as in the DCGAN tutorial
    assert C.upsampling_stages(64, 64) == 4
    assert C.upsampling_stages(336, 504) == 6  # a 6x8 seed map, cropped at 48x64 -> 42x63
    assert C.upsampling_stages(256, 256) == C.MAX_UPSAMPLING_STAGES


def test_config_json_round_trip():
    config = C.resolve("seed28", sets=["seed=5"])
    assert C.from_json(json.dumps(config.to_dict())) == config


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "job", *args], capture_output=True, text=True, timeout=120)


def test_cli_refuses_a_bad_value_with_one_message_and_exit_2():
    result = _cli("train", "--preset", "smoke", "--set", "name=..", "--dry-run")
    assert result.returncode == 2
    assert "'name'" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_dry_run_prints_the_resolved_config():
    result = _cli("train", "--preset", "smoke", "--set", "epochs=3", "--run", "gs://b/r", "--dry-run")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.split("\n#")[0])
    assert printed["epochs"] == 3 and printed["run_uri"] == "gs://b/r" and printed["name"] == "smoke"


def test_a_config_is_validated_once_and_a_changed_one_again(monkeypatch):
    from job.config import checks

    calls, real = [], checks._check_fields
    monkeypatch.setattr(checks, "_check_fields", lambda c: (calls.append(c.g_lr), real(c))[1])
    config = C.resolve("smoke")
    assert calls == [config.g_lr] and C.checked(config) is config and len(calls) == 1
    changed = C.override(config, {"g_lr": 3e-4})  # a new instance: not yet checked
    assert C.checked(changed) is changed and calls == [config.g_lr, 3e-4]
    assert C.identity_changes(config.to_dict(), changed) == {}  # the mark is no field
    assert "_validated" not in config.to_dict() and changed == C.from_json(json.dumps(changed.to_dict()))
