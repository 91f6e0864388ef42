"""The README cannot drift from the product: after its first command (`make demo`, here with
`DEMO_ARGS="--set epochs=2"`: the same commands and path, 2 epochs instead of 120), every code block
marked `<!-- readme-test -->` runs as written, in order, in a fresh folder, with bash -e.

The folder gets a `.venv` link to this interpreter's environment (what `make demo` would have set
up there), and make is told not to rebuild it (`-o`), so the test times the commands, not an
install. Blocks that need downloads, clusters or hours stay unmarked.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.job.test_tools import NOISE

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARK = "<!-- readme-test -->"


def marked_blocks(text: str) -> list[str]:
    """The fenced block right after each MARK, in order."""
    return [m.group(1) for m in re.finditer(re.escape(MARK) + r"\s*```(?:bash|sh)\n(.*?)```", text, re.S)]


def test_readme_marks_blocks():
    blocks = marked_blocks((ROOT / "README.md").read_text())
    assert blocks and all(b.strip() for b in blocks)
    assert ". .venv/bin/activate" in blocks[0]  # how to reach `covidct`, said once, first


@pytest.mark.heavy
def test_readme_blocks_run_as_written_after_make_demo(tmp_path):
    venv = pathlib.Path(sys.prefix)
    if not (venv / "bin" / "covidct").exists():
        pytest.skip(f"{venv} has no covidct script: run the suite from the project's .venv")
    (tmp_path / ".venv").symlink_to(venv, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    make = subprocess.run(["make", "-f", str(ROOT / "Makefile"), "-o", ".venv/bin/covidct", "demo",
                           "DEMO_ARGS=--set epochs=2"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert make.returncode == 0, make.stdout[-2000:] + make.stderr[-3000:]
    for noise in NOISE:  # prepare, train and generate on a machine without a GPU: no GPU noise,
        assert noise not in make.stdout + make.stderr  # no TFDS download banner
    assert len(list((tmp_path / "out" / "demo").glob("*.png"))) == 16

    for i, block in enumerate(marked_blocks((ROOT / "README.md").read_text())):
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (i, block, done.stdout[-2000:], done.stderr[-3000:])
    # What the first block promises is there.
    assert len(list((tmp_path / "synthetic" / "demo").glob("synthetic_*.png"))) == 16
    assert (tmp_path / "out" / "demo-export" / "saved_model" / "saved_model.pb").is_file()
    assert "Not for diagnosis" in (tmp_path / "out" / "demo-export" / "MODEL_CARD.md").read_text()
