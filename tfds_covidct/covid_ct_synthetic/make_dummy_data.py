"""Writes dummy_data/ for the builder test: a few tagged synthetic PNGs, as `covidct generate` does.

    .venv/bin/python -m tfds_covidct.covid_ct_synthetic.make_dummy_data

Phantom slices stand in for GAN output (no patient data may enter the repository), at 64x64: the
builder resizes nothing, so the test builds the `64` config. An untagged PNG not named
synthetic_* lies beside them and must be ignored. Same output on every run.
"""

from __future__ import annotations

import pathlib
import shutil

from PIL import Image

from tfds_covidct.covid_ct import phantoms
from tfds_covidct.covid_ct.resolutions import RESOLUTIONS
from tfds_covidct.covid_ct_synthetic import tags

DUMMY_DIR = pathlib.Path(__file__).with_name("dummy_data")
PER_CLASS = 2
CONFIG = "64"


def main() -> None:
    shutil.rmtree(DUMMY_DIR, ignore_errors=True)
    DUMMY_DIR.mkdir()
    h, w = RESOLUTIONS[CONFIG]
    for i in range(2 * PER_CLASS):
        label = tags.LABELS[i % 2]
        fig = phantoms.figure(i, label, phantoms.LAYOUTS[0], seed=11)
        image = Image.fromarray(fig.rgb).convert("L").resize((w, h), Image.Resampling.LANCZOS)
        image.save(DUMMY_DIR / f"synthetic_{i:05d}.png",
                   pnginfo=tags.png_info({"label": label, "run": "dummy", "epoch": "0"}))
    Image.new("L", (w, h)).save(DUMMY_DIR / "notes.png")  # not synthetic_*: never read


if __name__ == "__main__":
    main()
