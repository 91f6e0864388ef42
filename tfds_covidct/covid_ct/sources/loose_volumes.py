"""The last layout, tried after the others over the whole manual_dir: CT volumes no other layout
claimed (source "volumes"). Their label: a labels CSV (it wins over a folder), else the labelled
folder they are in (`covid/`, `non_covid/`, a MosMedData `CT-0` ... `CT-4` folder; any depth),
else they are recorded skips (`no_label`).
"""

from __future__ import annotations

import dataclasses
import pathlib

from tfds_covidct.covid_ct.sources.inputs import (
    LABELS_CSV,
    VOLUMES_SOURCE,
    Found,
    InputFile,
    volume_inputs,
)
from tfds_covidct.covid_ct.sources.labels import FOLDER_LABELS, lookup, with_label
from tfds_covidct.errors import DatasetError

NO_LABEL = "no_label"


def detect(root: pathlib.Path, claimed: set[str], labels: dict, labels_csv: str | None,
           anything_else: bool) -> list[Found]:
    """The volumes under `root` whose path is not in `claimed`, labelled. DatasetError when there
    are volumes, none has a label, and nothing else was found (`anything_else`)."""
    others = [v for v in volume_inputs(root, root) if v.path not in claimed]
    if not others:
        return []
    files = tuple(_label_volume(v, labels, root, labels_csv) for v in others)
    if all(f.skip == NO_LABEL for f in files) and not anything_else:
        raise DatasetError(
            f"manual_dir {str(root)!r} holds {len(files)} CT volume(s) but none has a label: put "
            "them under covid/ and non_covid/ folders, or pass a labels CSV (--labels-csv FILE, "
            f"or {LABELS_CSV} at the top of manual_dir) with columns path,label "
            f"(first unlabelled: {files[0].display})")
    return [Found(VOLUMES_SOURCE, str(root), files)]


def _label_volume(item: InputFile, labels: dict, root: pathlib.Path, labels_csv: str | None) -> InputFile:
    """A volume outside the other layouts: labelled by the CSV, else by a labelled folder above it
    (covid/, non_covid/, CT-0..CT-4), else a recorded skip (an earlier skip, a dangling link say,
    keeps its own reason)."""
    hit = lookup(item, labels, root)
    if hit:
        return with_label(item, *hit)
    rel = pathlib.Path(item.path).relative_to(root)
    parts = rel.parts if item.volume == "dicom" else rel.parts[:-1]
    for i in range(len(parts) - 1, -1, -1):
        label = FOLDER_LABELS.get(parts[i].lower())
        if label:
            below = parts[i + 1:i + 2]
            group = (f"series:{parts[i]}/{below[0]}" if below and item.volume == "dicom"
                     else item.group)
            return dataclasses.replace(item, label=label, group=group)
    if item.skip:
        return dataclasses.replace(item, label="non_covid")
    where = f"not listed in {labels_csv}" if labels_csv else "no labels CSV given"
    return dataclasses.replace(item, label="non_covid", skip=NO_LABEL, skip_detail=(
        f"{item.describe_volume()} outside covid/ non_covid/ (or CT-0..CT-4) folders and {where}"))
