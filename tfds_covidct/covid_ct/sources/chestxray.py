"""Layout: a covid-chestxray-dataset checkout (source "covid-chestxray-dataset"): `metadata.csv`
with `modality`, `finding`, `filename` columns, images in `images/` (the `folder` column) or beside
the csv; rows with modality CT, covid when the finding names COVID-19. Its `.nii.gz` rows are CT
volumes of this source; its patientid is the group.
"""

from __future__ import annotations

import csv
import io
import pathlib

from tfds_covidct.covid_ct.sources.inputs import (
    DANGLING,
    Found,
    InputFile,
    dangling_why,
    is_dangling,
    is_safe_member,
)

SOURCE = "covid-chestxray-dataset"


def detect(folder: pathlib.Path, root: pathlib.Path) -> list[Found]:
    metadata = folder / "metadata.csv"
    if not (metadata.is_file() and _is_chestxray_metadata(metadata)):
        return []
    return [Found(SOURCE, str(folder), tuple(chestxray_files(folder, root)))]


def _is_chestxray_metadata(path: pathlib.Path) -> bool:
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    return {"modality", "finding", "filename"} <= set(header)


def _skip_of(row: dict, root: pathlib.Path, folder: str, name: str, path: pathlib.Path
             ) -> tuple[str | None, str]:
    """Why a CT row is not read, if it is not: an unsafe name, a missing file or link, a
    non-axial view (coronal reconstructions; the dataset is axial slices)."""
    if not is_safe_member(f"{folder}/{name}" if folder else name):
        return "unsafe_path", f"metadata names {folder}/{name}"
    if is_dangling(path):
        return DANGLING, dangling_why(path)
    if not path.is_file():
        return "missing_file", f"metadata.csv lists {name} but it is not in {root.name}/"
    view = row.get("view", "").strip()
    if view and view.lower() != "axial":
        return "not_axial", f"view {view!r}"
    return None, ""


def chestxray_files(root: pathlib.Path, base: pathlib.Path) -> list[InputFile]:
    """The CT rows of a covid-chestxray-dataset metadata.csv (skips recorded, see `_skip_of`)."""
    from tfds_covidct.covid_ct import volumes

    text = (root / "metadata.csv").read_text(encoding="utf-8", errors="replace")
    files = []
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("modality", "").strip().upper() != "CT":
            continue
        name = row.get("filename", "").strip()
        label = "covid" if "covid-19" in row.get("finding", "").lower() else "non_covid"
        folder = row.get("folder", "").strip()
        candidates = [root / folder / name, root / name] if folder else [root / name]
        path = next((p for p in candidates if p.is_file() or is_dangling(p)), candidates[-1])
        display = path.relative_to(base).as_posix() if path.is_relative_to(base) else name
        skip, detail = _skip_of(row, root, folder, name, path)
        patient = row.get("patientid", "").strip()
        group = f"patient:{SOURCE}/{patient}" if patient else f"file:{name}"
        files.append(InputFile(SOURCE, label, str(path), display=display,
                               skip=skip, skip_detail=detail, group=group,
                               volume="nifti" if volumes.is_nifti(name) else ""))
    return files
