"""Writes dummy_data/ for the builder test: a tiny manual_dir in the Kaggle covidct layout.

    .venv/bin/python -m tfds_covidct.covid_ct.make_dummy_data

Synthetic phantoms only (no patient data may enter the repository), laid out like the real
archive: CT_COVID/*.png (one holding JPEG data, as 34 real files do), CT_NonCOVID/*.jpg, plus a
zero-byte file and an exact copy so that the test also sees a skip and a duplicate. Same output on
every run; the expected split sizes are in covid_ct_dataset_builder_test.py.
"""

from __future__ import annotations

import pathlib
import shutil

from PIL import Image

from tfds_covidct.covid_ct import phantoms

DUMMY_DIR = pathlib.Path(__file__).with_name("dummy_data")
PER_CLASS = 8


def main() -> None:
    shutil.rmtree(DUMMY_DIR, ignore_errors=True)
    covid, non_covid = DUMMY_DIR / "CT_COVID", DUMMY_DIR / "CT_NonCOVID"
    covid.mkdir(parents=True)
    non_covid.mkdir(parents=True)
    for i in range(PER_CLASS):
        layout = phantoms.LAYOUTS[i % len(phantoms.LAYOUTS)]
        fig = phantoms.figure(i, "covid", layout, seed=7)
        # Small files (the dummy data is checked in), yet large enough for 336x504 (MAX_UPSCALE).
        image = Image.fromarray(fig.rgb)
        image.thumbnail((300, 300))
        fmt = "JPEG" if i == 1 else "PNG"  # JPEG data in a .png file, like the real archive
        image.save(covid / f"phantom-paper-{i}-p1-1%0.png", format=fmt, quality=85)  # one paper each
        fig = phantoms.figure(i, "non_covid", layout, seed=7)
        image = Image.fromarray(fig.rgb).convert("L")
        image.thumbnail((300, 300))
        image.save(non_covid / f"{i}.jpg", quality=85)
    (covid / "empty.png").write_bytes(b"")
    shutil.copyfile(non_covid / "0.jpg", non_covid / "0_copy.jpg")


if __name__ == "__main__":
    main()
