"""Layout: the COVID-CT dataset (UCSD-AI4H; the Kaggle "covidct" archive), source "covid-ct":
extracted `CT_COVID/` and/or `CT_NonCOVID/` folders, or a zip holding them (also the UCSD
`CT_COVID.zip` / `CT_NonCOVID.zip`), read in place and never extracted. An entry whose path would
escape a folder (`../x.png`, `/etc/x`) is a recorded skip, never opened.

Groups: a non-COVID image's patient (NonCOVID-CT-MetaInfo.csv), a COVID figure's paper.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import pathlib
import re
import zipfile

from tfds_covidct.covid_ct.sources.inputs import (
    NONCOVID_METADATA,
    SKIPPED_NAMES,
    Found,
    InputFile,
    dangling_input,
    folder_files,
    is_dangling,
    is_safe_member,
)

SOURCE = "covid-ct"
COVIDCT_FOLDERS = {"ct_covid": "covid", "ct_noncovid": "non_covid"}
SHIPPED_NONCOVID_PATIENTS = pathlib.Path(__file__).parent.parent / "noncovid_patients.csv"
# COVID-CT's COVID images are paper figures named <paper>-p<page>-<figure>%<panel> (or
# <paper>_<n>%<panel> for the Lancet ones): every panel of one paper may show one patient.
_PAPER_PAGE = re.compile(r"^(?P<paper>.+?)-p\d+-")


def detect(folder: pathlib.Path, root: pathlib.Path) -> list[Found]:
    found = []
    covidct = [p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() in COVIDCT_FOLDERS]
    if covidct:
        files = []
        patients = noncovid_patients(root)
        for sub in covidct:
            label = COVIDCT_FOLDERS[sub.name.lower()]
            files.extend(dataclasses.replace(f, group=covidct_group(f.file_name, label, patients))
                         for f in folder_files(sub, SOURCE, label, root))
        found.append(Found(SOURCE, str(folder), tuple(files)))
    for archive in sorted(folder.glob("*.zip")):
        files = zip_files(archive, root)
        if files:
            found.append(Found(SOURCE, str(archive), tuple(files)))
    return found


def zip_files(archive: pathlib.Path, base: pathlib.Path) -> list[InputFile]:
    """The inputs of a covidct zip, read in place. Entries outside CT_COVID/ or CT_NonCOVID/
    are not ours and are ignored; unsafe entry names are recorded skips."""
    stem_label = COVIDCT_FOLDERS.get(archive.stem.lower())
    if is_dangling(archive):
        return [dangling_input(archive, SOURCE, stem_label or "non_covid", base)]
    try:
        with zipfile.ZipFile(archive) as z:
            names = [i.filename for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:  # it may be the archive, cut short: say so
        return [InputFile(SOURCE, stem_label or "non_covid", str(archive),
                          display=archive.relative_to(base).as_posix(),
                          skip="corrupt_zip", skip_detail=f"{type(e).__name__}: {e}")]
    patients = noncovid_patients(base)
    files = []
    for name in sorted(names):
        display = f"{archive.relative_to(base).as_posix()}/{name}"
        if not is_safe_member(name):
            files.append(InputFile(SOURCE, stem_label or "non_covid", str(archive), name,
                                   display, skip="unsafe_zip_entry",
                                   skip_detail=f"entry {name!r} would escape the archive folder"))
            continue
        parts = name.split("/")
        label = next((COVIDCT_FOLDERS[p.lower()] for p in parts[:-1][:3] if p.lower() in COVIDCT_FOLDERS),
                     stem_label)
        if label is None or parts[-1] in SKIPPED_NAMES or parts[-1].startswith("._"):
            continue
        files.append(InputFile(SOURCE, label, str(archive), name, display,
                               group=covidct_group(parts[-1], label, patients)))
    return files


def covidct_group(file_name: str, label: str, patients: dict[str, str]) -> str:
    """The group of a COVID-CT image: the non-COVID patient id (NonCOVID-CT-MetaInfo.csv), or
    the paper of a COVID figure (`<paper>-p<page>-<figure>%<panel>` -> `<paper>`)."""
    if label == "non_covid":
        if file_name in patients:
            return f"patient:covid-ct/{patients[file_name]}"
        stem = file_name.rsplit(".", 1)[0]
        if file_name.lower().endswith(".jpg") and re.fullmatch(r"\d+(%\d+)?", stem):
            # The metadata names every such file crawled_patient_<n> for <n>%<k>.jpg.
            return f"patient:covid-ct/crawled_patient_{stem.split('%')[0]}"
        return f"file:{file_name}"
    match = _PAPER_PAGE.match(file_name)
    if match:
        return f"paper:{match.group('paper')}"
    stem = re.sub(r"(_\d+)?(%\d+)?$", "", file_name.rsplit(".", 1)[0])
    return f"paper:{stem}"


def noncovid_patients(root: pathlib.Path) -> dict[str, str]:
    """Image name -> patient id of the COVID-CT non-COVID images: NonCOVID-CT-MetaInfo.csv from
    manual_dir (at its top or up to two folders down) when there is one, else the shipped copy."""
    for depth in ("", "*/", "*/*/"):
        for path in sorted(pathlib.Path(root).glob(f"{depth}{NONCOVID_METADATA}")):
            return _read_patients(str(path))
    return _read_patients(str(SHIPPED_NONCOVID_PATIENTS))


@functools.lru_cache(maxsize=8)
def _read_patients(path: str) -> dict[str, str]:
    text = pathlib.Path(path).read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    out = {}
    for row in csv.DictReader(lines):
        name, patient = (row.get("image name") or "").strip(), (row.get("patient id") or "").strip()
        if name and patient:
            out[name] = patient
    return out
