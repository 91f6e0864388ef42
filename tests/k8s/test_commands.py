"""Every `covidct` and `python -m tune` command line in the manifests parses with the project's own
parser and resolves to a valid TrainConfig (no drift between manifests and code).
"""

from __future__ import annotations


import pytest

from job import config as cfg
from job.cli import config_from_args

from tests.k8s.manifests import (containers, expand, job_command_lines, only, parse, pod_specs,
                                  run_config, sweep_arguments, tune_command_lines)


def test_the_run_settings_are_pinned_for_the_jobs_lifetime():
    """A pod started after a preemption reads the settings the Job started with: the ConfigMap is
    immutable (the API server refuses edits), so editing RUN_URI or EPOCHS cannot switch a live
    Job to another run; new settings need a new ConfigMap name and a new Job."""
    (config_map,) = only("ConfigMap")
    assert config_map.get("immutable") is True
    (job,) = only("Job")
    names = {item["valueFrom"]["configMapKeyRef"]["name"]
             for _, pod in pod_specs(job) for c in containers(pod) for item in c.get("env", [])
             if "valueFrom" in item}
    assert names == {config_map["metadata"]["name"]}


# ---------------------------------------------------------------------------------------------
# Tests: command lines against the project's own parser (no drift between manifests and code)


def test_job_commands_parse_and_resolve_to_the_run_config():
    lines = dict(job_command_lines())
    data = run_config()
    assert all(argv[0] == "covidct" for argv in lines.values()), lines
    by_command = {}
    for where, argv in lines.items():
        args = parse(argv[1:], where)
        by_command.setdefault(args.command, []).append(args)
    assert sorted(by_command) == ["prepare", "train"], f"expected one prepare and one train: {lines}"
    (train,), (prepare,) = by_command["train"], by_command["prepare"]

    config = config_from_args(train, run_uri=train.run)
    assert isinstance(config, cfg.TrainConfig)
    assert config.name == "seed336x504" and data["PRESET"] == "seed336x504"
    assert config.epochs == 2250
    assert config.resolved_run_uri == data["RUN_URI"] and data["RUN_URI"].startswith("gs://")
    assert config.data_dir == data["DATA_DIR"] and config.dataset_config == data["DATASET_CONFIG"]
    assert cfg.validate(config, num_replicas=1) == config  # one GPU per pod

    # The init container prepares exactly what training reads, and only when it is not there.
    assert prepare.config == config.dataset_config
    assert prepare.data_dir == config.data_dir
    assert prepare.manual_dir == data["MANUAL_DIR"] and prepare.if_missing and not prepare.demo


def test_rayjob_sweep_parses_and_trains_on_the_prepared_dataset():
    data = run_config()
    lines = tune_command_lines()
    assert lines, "no RayJob entrypoint runs python -m tune"
    for where, argv in lines:
        from tune.cli import sweep_config  # config_from_args plus the sweep's own flags

        args = sweep_arguments(argv, where)
        config = sweep_config(args)
        assert isinstance(config, cfg.TrainConfig)
        assert config.dataset_config == data["DATASET_CONFIG"], "the sweep needs the data the Job prepared"
        assert config.data_dir == data["DATA_DIR"]
        assert cfg.validate(config, num_replicas=1) == config


def test_an_undefined_variable_in_args_is_caught():
    with pytest.raises(AssertionError, match="RUN_URL"):
        expand("--run=$(RUN_URL)", {"RUN_URI": "gs://b/r"}, "test")
    assert expand("epochs=$(EPOCHS)", {"EPOCHS": "2250"}, "test") == "epochs=2250"


