"""Every usage error of every command exits 2 (the contract in `job.errors`: will fail again, so
the Job's podFailurePolicy must not retry it) with one line naming the flag, never a traceback.
argparse's own errors already exit 2; these are the ones that reach our code, plus the argparse
types that now catch them first."""

import json

import pytest

from job import cli


def exit_code(capsys, *argv: str) -> tuple[int, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("a folder, not a run")
    return str(tmp_path)


@pytest.fixture
def bad_flags(not_a_run, tmp_path):
    out = str(tmp_path / "out")
    return {
        "generate --n 0": (["generate", "--run", not_a_run, "--n", "0", "--out", out], "--n"),
        "generate --n x": (["generate", "--run", not_a_run, "--n", "x", "--out", out], "--n"),
        "generate --checkpoint bestt": (["generate", "--run", not_a_run, "--checkpoint", "bestt",
                                         "--out", out], "--checkpoint"),
        "generate --run (not a run)": (["generate", "--run", not_a_run, "--out", out], "is not a run"),
        "generate --drop-copies --run (not a run)": (["generate", "--run", not_a_run, "--drop-copies",
                                                       "--out", out], "is not a run"),
        "evaluate --n 0": (["evaluate", "--run", not_a_run, "--n", "0", "--out", out], "--n"),
        "evaluate --n 1": (["evaluate", "--run", not_a_run, "--n", "1", "--out", out], "--n"),
        "evaluate --checkpoint bestt": (["evaluate", "--run", not_a_run, "--checkpoint", "bestt",
                                         "--out", out], "--checkpoint"),
        "evaluate --run (not a run)": (["evaluate", "--run", not_a_run, "--out", out], "is not a run"),
        "evaluate --images without --data-dir": (["evaluate", "--images", not_a_run, "--out", out],
                                                 "--images"),
        "evaluate --run with --data-dir": (["evaluate", "--run", not_a_run, "--data-dir", "d",
                                            "--out", out], "--run"),
        "export --run (not a run)": (["export", "--run", not_a_run, "--out", out], "is not a run"),
        "export --format onnx": (["export", "--run", not_a_run, "--format", "onnx", "--out", out],
                                 "--format"),
        "export --checkpoint bestt": (["export", "--run", not_a_run, "--checkpoint", "bestt",
                                       "--out", out], "--checkpoint"),
        "prepare --config 99": (["prepare", "--demo", "--config", "99", "--data-dir", out], "--config"),
        "train --preset nope": (["train", "--preset", "nope", "--dry-run"], "--preset: 'nope'"),
        "train --set nope=1": (["train", "--set", "nope=1", "--dry-run"], "nope"),
        "train --set epochs=many": (["train", "--set", "epochs=many", "--dry-run"], "epochs"),
        "train --set epochs": (["train", "--set", "epochs", "--dry-run"], "--set"),
        "train --set name=..": (["train", "--set", "name=..", "--dry-run"], "name"),
        "train --config (missing)": (["train", "--config", str(tmp_path / "no.yaml"), "--dry-run"],
                                     "--config"),
        "best --top 0": (["best", "--sweep", not_a_run, "--top", "0"], "--top"),
        "best --sweep (not a sweep)": (["best", "--sweep", not_a_run], "holds no trial runs"),
    }


CASES = ["generate --n 0", "generate --n x", "generate --checkpoint bestt", "generate --run (not a run)",
         "generate --drop-copies --run (not a run)", "evaluate --n 0", "evaluate --n 1",
         "evaluate --checkpoint bestt", "evaluate --run (not a run)",
         "evaluate --images without --data-dir", "evaluate --run with --data-dir",
         "export --run (not a run)", "export --format onnx", "export --checkpoint bestt",
         "prepare --config 99", "train --preset nope", "train --set nope=1",
         "train --set epochs=many", "train --set epochs", "train --set name=..", "train --config (missing)",
         "best --top 0", "best --sweep (not a sweep)"]


@pytest.mark.parametrize("case", CASES)
def test_usage_error_exits_2_naming_the_problem(case, bad_flags, capsys):
    argv, named = bad_flags[case]
    code, err = exit_code(capsys, *argv)
    assert code == 2, (case, code, err)
    assert named in err and "Traceback" not in err, err
    assert "config field '--" not in err  # a flag is named as a flag


def test_every_command_is_walked():
    """A new command must bring its bad arguments here."""
    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)
    walked = {case.split()[0] for case in CASES}
    assert commands - walked <= {"config", "sweep"}, commands - walked


def test_config_lists_every_field_with_type_default_and_meaning(capsys):
    from job.config import FIELDS, TrainConfig

    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line[:1] not in (" ", "")}
    assert set(rows) == set(FIELDS)
    for name, field in FIELDS.items():
        parts = rows[name].split(None, 3)
        assert parts[1] == field.type if isinstance(field.type, str) else field.type.__name__
        assert parts[2] == repr(getattr(TrainConfig(), name))
        assert len(parts) == 4 and len(parts[3]) > 10, (name, rows[name])  # a meaning
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "g_lr" in capsys.readouterr().out


@pytest.mark.parametrize("flags, named", [
    (["--space", "SPACE"], "no_such_field"),
    (["--num-samples", "0"], "--num-samples"),
    (["--name", ".."], "--name"),
])
def test_sweep_usage_errors_exit_2_before_any_cluster(flags, named, capsys, tmp_path):
    spec = tmp_path / "space.json"
    spec.write_text(json.dumps({"no_such_field": [1, 2]}))
    argv = ["sweep", "--preset", "smoke", "--name", "s", "--storage", str(tmp_path / "sweeps")]
    argv += [str(spec) if f == "SPACE" else f for f in flags]
    code, err = exit_code(capsys, *argv)
    assert code == 2 and named in err, err
