"""Checkpoints that prove themselves, on one real trained smoke run (2 epochs, 2 checkpoints).

Each test copies the run, damages its files as a truncated upload, a flipped byte, a lifecycle
rule or a hand edit would, and runs the real command: the damaged checkpoint is set aside with one
line naming it and why, and the one before it is used; when none is left, one line and exit 2.
"""

import json
import logging
import shutil

import pytest
from PIL import Image

from job import cli, run
from job.generate import generate_pngs
from job.training.loop import fit
from tests.helpers import smoke

pytestmark = pytest.mark.heavy

NEWEST, OLDER = "e000002-s00000", "e000001-s00000"
DATA = "ckpt.data-00000-of-00001"


@pytest.fixture(scope="module")
def trained(demo_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained") / "run"
    fit(smoke(demo_data, folder))
    return folder


@pytest.fixture
def copy(trained, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    return folder


def damage(folder, name: str, how: str) -> None:
    path = folder / run.checkpoint_file(name, DATA)
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        data[len(data) // 3] ^= 0x01
        path.write_bytes(bytes(data))
    else:
        path.unlink()


def set_aside_lines(messages: list[str]) -> list[str]:
    return [m for m in messages if m.startswith("set aside checkpoint")]


@pytest.mark.parametrize("how, why", [("truncate", "bytes"), ("flip", "CRC32C"),
                                      ("delete", "is missing")])
def test_generate_sets_a_damaged_newest_checkpoint_aside_and_draws_from_the_one_before(
        copy, tmp_path, caplog, how, why):
    damage(copy, NEWEST, how)
    with caplog.at_level(logging.INFO, logger="covidct"):
        names = generate_pngs(str(copy), str(tmp_path / "out"), n=2)
    lines = set_aside_lines(caplog.messages)
    assert len(lines) == 1 and NEWEST in lines[0] and DATA in lines[0] and why in lines[0]
    assert Image.open(tmp_path / "out" / names[0]).text["epoch"] == "1"


def test_a_checkpoint_from_before_manifests_is_trusted_until_it_fails_to_restore(copy, tmp_path, caplog):
    (copy / run.checkpoint_file(NEWEST, run.COMPLETE)).write_text("")  # an older version's marker
    damage(copy, NEWEST, "truncate")
    with caplog.at_level(logging.INFO, logger="covidct"):
        names = generate_pngs(str(copy), str(tmp_path / "out"), n=1)
    lines = set_aside_lines(caplog.messages)
    assert len(lines) == 1 and NEWEST in lines[0] and "does not restore" in lines[0]
    assert Image.open(tmp_path / "out" / names[0]).text["epoch"] == "1"


def test_resume_sets_a_damaged_checkpoint_aside_and_trains_its_epoch_again(copy, demo_data, caplog):
    damage(copy, NEWEST, "flip")
    with caplog.at_level(logging.INFO, logger="covidct"):
        fit(smoke(demo_data, copy))
    assert len(set_aside_lines(caplog.messages)) == 1
    assert f"resumed from {copy / run.CHECKPOINTS / OLDER}" in caplog.text
    assert [m["epoch"] for m in run.read_metrics(str(copy))] == [1, 2]
    assert run.read_listing(str(copy)).latest.name == NEWEST + "-r1"  # never a write under a marker


def test_every_checkpoint_damaged_is_one_line_and_exit_2(copy, tmp_path, capsys):
    damage(copy, NEWEST, "delete")
    damage(copy, OLDER, "flip")
    code = cli.main(["generate", "--run", str(copy), "--n", "1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "no usable checkpoint" in err and NEWEST in err and OLDER in err


@pytest.mark.parametrize("edit", ["comment", "trailing comma"])
def test_a_hand_edited_config_json_is_one_line_naming_its_place_and_exit_2(
        copy, demo_data, tmp_path, capsys, edit):
    path = copy / run.CONFIG
    text = path.read_text()
    path.write_text(text.replace("{", "{\n // tuned by hand", 1) if edit == "comment"
                    else text.rstrip().rstrip("}").rstrip() + ",\n}\n")
    line = 2 if edit == "comment" else len(path.read_text().splitlines())
    for argv in (["train", "--preset", "smoke", "--run", str(copy), "--set", f"data_dir={demo_data}"],
                 ["generate", "--run", str(copy), "--n", "1", "--out", str(tmp_path / "g")],
                 ["evaluate", "--run", str(copy), "--n", "2", "--out", str(tmp_path / "e")]):
        code = cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, (argv[0], err)
        assert f"{path} is not valid JSON at line {line}," in err, (argv[0], err)


class Stop(Exception):
    """Ends a fit from its step hook, as a crash would."""


def test_a_mid_epoch_checkpoint_refuses_another_global_batch_size(copy, demo_data, capsys):
    def stop_at_step_3(epoch, step):
        if (epoch, step) == (2, 3):
            raise Stop

    with pytest.raises(Stop):  # a third epoch, saved after every step, cut off at its 4th step
        fit(smoke(demo_data, copy, epochs=3, checkpoint_every_minutes=1e-6), on_step=stop_at_step_3)
    latest = run.read_listing(str(copy)).latest
    assert (latest.epoch, latest.step) in [(2, 2), (2, 3)]
    state = json.loads((copy / run.checkpoint_file(latest.name, run.STATE)).read_text())
    assert state["global_batch_size"] == 16
    code = cli.main(["train", "--preset", "smoke", "--run", str(copy), "--set", f"data_dir={demo_data}",
                     "--set", "epochs=3", "--set", "global_batch_size=8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "global_batch_size" in err and "batches of 16" in err and latest.name in err


def test_an_object_named_to_escape_the_run_folder_is_refused_and_nothing_is_written(
        trained, tmp_path, gcs_prefix, capsys):
    """`checkpoints/e2//<absolute path>`: below the checkpoint's prefix its name is an absolute
    path, which a local join lands on. (The emulator refuses to store names with `..` parts,
    which GCS accepts; `storage.files.inside` refuses both, the test below covers `..`.)"""
    from job import storage
    from job.storage.buckets import blob

    storage.upload_dir(str(trained), gcs_prefix)
    landing = tmp_path / "escaped"
    blob(storage.join(gcs_prefix, run.checkpoint_dir(NEWEST)) + "/" + str(landing)).upload_from_string(b"x")

    code = cli.main(["generate", "--run", gcs_prefix, "--n", "1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "refusing to copy" in err, err
    assert not landing.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../../x", "a/../../x", "/etc/x"])
def test_names_that_climb_out_are_refused(name):
    from job.storage import StorageError
    from job.storage.files import inside

    with pytest.raises(StorageError, match="would leave"):
        inside(name, "gs://b/run/checkpoints/e1")
    assert inside("a/..b/x", "gs://b/run") == "a/..b/x"


def test_a_full_disk_during_a_checkpoint_is_one_line_exit_1_and_nothing_promoted(demo_data, tmp_path, capsys):
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        folder = disk / "run"
        code = cli.main(["train", "--preset", "smoke", "--run", str(folder), "--set", f"data_dir={demo_data}",
                         "--set", "epochs=2", "--set", "sample_every_epochs=5",
                         "--set", "metrics_every_epochs=5"])  # epoch 1: a checkpoint alone
        err = capsys.readouterr().err.strip()
        assert code == 1 and len(err.splitlines()) == 1, err
        assert "cannot write checkpoint e000001-s00000" in err and "No space left" in err, err
        listing = run.read_listing(str(folder))
        assert listing.checkpoints == () and listing.incomplete == ()
        assert not (folder / run.BEST).exists() and not (folder / run.EXPORT).exists()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_best_pulls_the_trials_next_measured_checkpoint_when_its_best_is_damaged(
        trained, tmp_path, caplog):
    from job.metrics import registry
    from tune import best as sweep_best

    sweep = tmp_path / "sweep"
    shutil.copytree(trained, sweep / "t1" / "run")
    chosen = sweep_best.rank(sweep_best.read_trials(str(sweep)), registry.SELECTION_METRIC)[0]
    damage(sweep / "t1" / "run", chosen.checkpoint.name, "flip")
    with caplog.at_level(logging.INFO, logger="covidct"):
        sweep_best.best(str(sweep), out=str(tmp_path / "out"))
    lines = set_aside_lines(caplog.messages)
    assert len(lines) == 1 and chosen.checkpoint.name in lines[0] and "CRC32C" in lines[0]
    other = ({NEWEST, OLDER} - {chosen.checkpoint.name}).pop()
    pulled = sorted(p.name for p in (tmp_path / "out" / run.CHECKPOINTS).iterdir() if p.is_dir())
    assert pulled == [other] and run.read_best(str(tmp_path / "out"))["name"] == other
