"""Finds the scan sources in a manual_dir by their layout.

Each layout is a module with `detect(folder, root) -> list[Found]`, tried at the top of manual_dir
and in each folder one level down, in the order of LAYOUTS; a layout with `EXCLUSIVE = True`
(the synthetic phantoms) stops the others in that folder. After them, `loose_volumes` gathers the
CT volumes no layout claimed, anywhere below manual_dir. Adding a layout: one module in this
package and one entry in LAYOUTS.

CT volumes wherever they are: a NIfTI file (`.nii`, `.nii.gz`) is one input; the DICOM files of
one folder (`.dcm`, or extension-less files with the DICM preamble) are one input, split into
series by SeriesInstanceUID when read. A labels CSV (`labels_csv`, or `labels.csv` at the top of
manual_dir) labels volumes and wins over a folder's label.
"""

from __future__ import annotations

import pathlib

from tfds_covidct.covid_ct.sources import (
    chestxray,
    covidct,
    labelled_folders,
    loose_volumes,
    synthetic,
)
from tfds_covidct.covid_ct.sources.inputs import LABELS_CSV, Found
from tfds_covidct.covid_ct.sources.labels import read_labels, relabel
from tfds_covidct.errors import DatasetError

LAYOUTS = (synthetic, covidct, chestxray, labelled_folders)


def discover(manual_dir: str | None, labels_csv: str | None = None) -> list[Found]:
    """Every recognisable source in `manual_dir`; DatasetError when there is nothing to build.

    `labels_csv` labels volumes (see `labels.read_labels`); default `labels.csv` at the top of
    manual_dir.
    """
    if not manual_dir:
        raise DatasetError(
            "no manual_dir given: pass the folder holding the downloaded scans "
            "(see the covid_ct README), or use --demo for synthetic phantoms")
    root = pathlib.Path(manual_dir)
    if not root.is_dir():
        raise DatasetError(f"manual_dir {manual_dir!r} does not exist or is not a folder")
    entries = sorted(p.name for p in root.iterdir())
    if not entries:
        raise DatasetError(f"manual_dir {manual_dir!r} is empty: put the downloaded scans there "
                           "(see the covid_ct README)")
    found = []
    for folder in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
        found.extend(_found_in(folder, root))
    if labels_csv is None and (root / LABELS_CSV).is_file():
        labels_csv = str(root / LABELS_CSV)
    labels = read_labels(labels_csv) if labels_csv else {}
    if labels:
        found = [relabel(f, labels, root) for f in found]
    claimed = {f.path for src in found for f in src.files}
    anything_else = any(not f.skip for src in found for f in src.files)
    found.extend(loose_volumes.detect(root, claimed, labels, labels_csv, anything_else))
    if not found:
        raise DatasetError(
            f"no recognisable source in manual_dir {manual_dir!r} (it holds: "
            f"{', '.join(entries[:10])}{' ...' if len(entries) > 10 else ''}). Expected a covidct "
            "zip, CT_COVID/ + CT_NonCOVID/ folders, a covid-chestxray-dataset checkout "
            "(metadata.csv + images/), covid/ + non_covid/ folders, CT volumes (DICOM, NIfTI) with "
            "labels, or synthetic phantoms")
    if any(f.synthetic for f in found) and not all(f.synthetic for f in found):
        raise DatasetError(
            f"manual_dir {manual_dir!r} mixes synthetic phantoms with real scans: "
            "build them into separate data_dirs")
    return found


def _found_in(folder: pathlib.Path, root: pathlib.Path) -> list[Found]:
    """The sources whose layout starts right in `folder`; names are relative to `root`."""
    found = []
    for layout in LAYOUTS:
        hits = layout.detect(folder, root)
        found.extend(hits)
        if hits and getattr(layout, "EXCLUSIVE", False):
            break
    return found
