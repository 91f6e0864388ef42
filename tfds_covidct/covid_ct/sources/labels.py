"""The class names, and every way a source names them: folder names, label words, a labels CSV.

`LABELS` is the one list of the project's classes (the dataset's ClassLabel, the models' classes,
the synthetic dataset's tags), in this order.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import pathlib
import re

from tfds_covidct.covid_ct.sources.inputs import VOLUMES_SOURCE
from tfds_covidct.errors import DatasetError

LABELS = ("covid", "non_covid")
# Folder names that label the volumes below them. MosMedData's studies are CT-0 (no signs of viral
# pneumonia) and CT-1 ... CT-4 (COVID-19 pneumonia by lung involvement).
FOLDER_LABELS = {"covid": "covid", "non_covid": "non_covid", "ct-0": "non_covid", "ct-1": "covid",
                 "ct-2": "covid", "ct-3": "covid", "ct-4": "covid"}
# Label words a labels CSV may use, lower case.
LABEL_WORDS = {"covid": "covid", "covid-19": "covid", "covid19": "covid", "positive": "covid",
               "non_covid": "non_covid", "non-covid": "non_covid", "noncovid": "non_covid",
               "normal": "non_covid", "negative": "non_covid",
               **{k: v for k, v in FOLDER_LABELS.items() if k.startswith("ct-")}}
LABELS_KEY_COLUMNS = ("path", "volume", "file", "filename", "study_file", "study", "name")
LABELS_LABEL_COLUMNS = ("label", "class", "finding", "category")


def read_labels(path: str) -> dict[str, tuple[str, str]]:
    """A labels CSV -> {key: (label, patient)}. Columns: a key (`path` relative to manual_dir, or a
    file/folder name, with or without .nii/.nii.gz: one of LABELS_KEY_COLUMNS), a label (covid /
    non_covid and the LABEL_WORDS synonyms, MosMedData's CT-0..CT-4: one of LABELS_LABEL_COLUMNS)
    and optionally `patient` (the group). A bad file or label is a DatasetError naming the row."""
    file = pathlib.Path(path).expanduser()
    if not file.is_file():
        raise DatasetError(f"labels CSV {path!r} does not exist")
    reader = csv.DictReader(io.StringIO(file.read_text(encoding="utf-8-sig", errors="replace")))
    header = {h.strip().lower(): h for h in reader.fieldnames or []}
    key_col = next((header[c] for c in LABELS_KEY_COLUMNS if c in header), None)
    label_col = next((header[c] for c in LABELS_LABEL_COLUMNS if c in header), None)
    if key_col is None or label_col is None:
        raise DatasetError(f"labels CSV {path}: needs a key column (one of {list(LABELS_KEY_COLUMNS)}) "
                           f"and a label column (one of {list(LABELS_LABEL_COLUMNS)}); it has "
                           f"{reader.fieldnames}")
    patient_col = header.get("patient") or header.get("patient_id") or header.get("patientid")
    out = {}
    for line, row in enumerate(reader, start=2):
        key = (row.get(key_col) or "").strip().strip("/")
        word = (row.get(label_col) or "").strip().lower()
        if not key:
            continue
        if word not in LABEL_WORDS:
            raise DatasetError(f"{path}:{line}: label {word!r} is not one of {sorted(set(LABEL_WORDS))}")
        out[key] = (LABEL_WORDS[word], (row.get(patient_col) or "").strip() if patient_col else "")
    return out


def _volume_keys(item, root: pathlib.Path) -> list[str]:
    path = pathlib.Path(item.path)
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    name = path.name
    stem = re.sub(r"\.nii(\.gz)?$", "", name, flags=re.IGNORECASE)
    rel_stem = re.sub(r"\.nii(\.gz)?$", "", rel, flags=re.IGNORECASE)
    return [rel, rel_stem, name, stem]


def lookup(item, labels: dict, root: pathlib.Path) -> tuple[str, str] | None:
    """The (label, patient) a labels CSV gives an input (a volume), or None."""
    return next((labels[k] for k in _volume_keys(item, root) if k in labels), None)


def with_label(item, label: str, patient: str):
    """`item` (an InputFile) labelled; a patient named by the CSV becomes its group."""
    group = f"patient:{VOLUMES_SOURCE}/{patient}" if patient else item.group
    return dataclasses.replace(item, label=label, group=group)


def relabel(found, labels: dict, root: pathlib.Path):
    """The labels CSV wins over a folder's label for the volumes a Found source lists."""
    files = []
    for f in found.files:
        hit = lookup(f, labels, root) if f.volume else None
        files.append(with_label(f, *hit) if hit else f)
    return dataclasses.replace(found, files=tuple(files))
