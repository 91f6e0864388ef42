"""Layout: the synthetic phantoms of `phantoms.write_phantoms` (a SYNTHETIC_PHANTOMS.json marker
beside `covid/` and `non_covid/` folders), source "synthetic_phantom", never mixed with real scans.
"""

from __future__ import annotations

import pathlib

from tfds_covidct.covid_ct.sources.inputs import (
    SYNTHETIC_MARKER, SYNTHETIC_SOURCE, Found, folder_files)
from tfds_covidct.covid_ct.sources.labels import LABELS

EXCLUSIVE = True  # a folder of phantoms is nothing else: no other layout is tried in it


def detect(folder: pathlib.Path, root: pathlib.Path) -> list[Found]:
    if not (folder / SYNTHETIC_MARKER).is_file():
        return []
    files = []
    for label in LABELS:
        if (folder / label).is_dir():
            files.extend(folder_files(folder / label, SYNTHETIC_SOURCE, label, root))
    return [Found(SYNTHETIC_SOURCE, str(folder), tuple(files))]
