"""Finds the scan sources in a manual_dir by their layout, and lists every input file.

Layouts recognised (at the top of manual_dir or one folder down):
  * a zip holding `CT_COVID/` and/or `CT_NonCOVID/` (the Kaggle "covidct" archive; also the UCSD
    `CT_COVID.zip` / `CT_NonCOVID.zip`): read in place, never extracted. An entry whose path
    would escape a folder (`../x.png`, `/etc/x`) is a recorded skip, never opened.
  * extracted `CT_COVID/` and/or `CT_NonCOVID/` folders (source "covid-ct");
  * a covid-chestxray-dataset checkout: `metadata.csv` with `modality`, `finding`, `filename`
    columns, images in `images/` (the `folder` column) or beside the csv (source
    "covid-chestxray-dataset"); rows with modality CT, covid when the finding names COVID-19;
  * `covid/` and `non_covid/` folders of any scans: the folder name is the label (source "folder");
  * the synthetic phantoms of `phantoms.write_phantoms` (a `SYNTHETIC_PHANTOMS.json` marker):
    source "synthetic_phantom", never mixed with real scans.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import pathlib
import posixpath
import re
import zipfile

from tfds_covidct.errors import DatasetError

LABELS = ("covid", "non_covid")
COVIDCT_FOLDERS = {"ct_covid": "covid", "ct_noncovid": "non_covid"}
SYNTHETIC_MARKER = "SYNTHETIC_PHANTOMS.json"
SYNTHETIC_SOURCE = "synthetic_phantom"
MAX_FILE_BYTES = 64 * 1024 * 1024  # no CT figure is this big; larger files are refused unread
NONCOVID_METADATA = "NonCOVID-CT-MetaInfo.csv"
SHIPPED_NONCOVID_PATIENTS = pathlib.Path(__file__).with_name("noncovid_patients.csv")
SKIPPED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini", "metadata.csv", SYNTHETIC_MARKER,
                 NONCOVID_METADATA}
# COVID-CT's COVID images are paper figures named <paper>-p<page>-<figure>%<panel> (or
# <paper>_<n>%<panel> for the Lancet ones): every panel of one paper may show one patient.
_PAPER_PAGE = re.compile(r"^(?P<paper>.+?)-p\d+-")

@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input: where its bytes are, and what the layout says about it.

    `path` is a file, or a zip when `member` is set. `skip` is a reason decided before reading
    (an unsafe zip entry, a non-CT metadata row...): such a file gets an audit row but is not read.
    """

    source: str
    label: str
    path: str
    member: str | None = None
    display: str = ""  # source-relative name for the audit and logs
    skip: str | None = None
    skip_detail: str = ""
    # Who or what the scan shows, from the source's metadata: scans of one group never straddle
    # the train/test split. "patient:<id>", "paper:<prefix>", "series:<folder>" or "file:<name>".
    group: str = ""

    @property
    def file_name(self) -> str:
        return posixpath.basename(self.member) if self.member else pathlib.Path(self.path).name

    def read(self) -> bytes:
        """The file's bytes; refuses (ValueError) a file over MAX_FILE_BYTES without reading it."""
        if self.member is None:
            size = pathlib.Path(self.path).stat().st_size
            if size > MAX_FILE_BYTES:
                raise ValueError(f"{size} bytes is over the limit of {MAX_FILE_BYTES}")
            return pathlib.Path(self.path).read_bytes()
        with zipfile.ZipFile(self.path) as archive:
            info = archive.getinfo(self.member)
            if info.file_size > MAX_FILE_BYTES:
                raise ValueError(f"{info.file_size} bytes is over the limit of {MAX_FILE_BYTES}")
            return archive.read(info)


@dataclasses.dataclass(frozen=True)
class Found:
    """A recognised source: its kind, where it is, and its inputs."""

    kind: str
    root: str
    files: tuple[InputFile, ...]

    @property
    def synthetic(self) -> bool:
        return self.kind == SYNTHETIC_SOURCE

    def describe(self) -> str:
        skipped = sum(1 for f in self.files if f.skip)
        return (f"found source {self.kind} at {self.root}: {len(self.files)} files"
                + (f" ({skipped} skipped by layout)" if skipped else ""))


def discover(manual_dir: str | None) -> list[Found]:
    """Every recognisable source in `manual_dir`; DatasetError when there is nothing to build."""
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
    if not found:
        raise DatasetError(
            f"no recognisable source in manual_dir {manual_dir!r} (it holds: "
            f"{', '.join(entries[:10])}{' ...' if len(entries) > 10 else ''}). Expected a covidct "
            "zip, CT_COVID/ + CT_NonCOVID/ folders, a covid-chestxray-dataset checkout "
            "(metadata.csv + images/), covid/ + non_covid/ folders, or synthetic phantoms")
    if any(f.synthetic for f in found) and not all(f.synthetic for f in found):
        raise DatasetError(
            f"manual_dir {manual_dir!r} mixes synthetic phantoms with real scans: "
            "build them into separate data_dirs")
    return found


def _found_in(folder: pathlib.Path, root: pathlib.Path) -> list[Found]:
    """The sources whose layout starts right in `folder`; names are relative to `root`."""
    found = []
    if (folder / SYNTHETIC_MARKER).is_file():
        return [Found(SYNTHETIC_SOURCE, str(folder), tuple(_label_folders(folder, SYNTHETIC_SOURCE, root)))]
    covidct = [p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() in COVIDCT_FOLDERS]
    if covidct:
        files = []
        patients = noncovid_patients(root)
        for sub in covidct:
            label = COVIDCT_FOLDERS[sub.name.lower()]
            files.extend(dataclasses.replace(f, group=covidct_group(f.file_name, label, patients))
                         for f in _folder_files(sub, "covid-ct", label, root))
        found.append(Found("covid-ct", str(folder), tuple(files)))
    for archive in sorted(folder.glob("*.zip")):
        files = zip_files(archive, root)
        if files:
            found.append(Found("covid-ct", str(archive), tuple(files)))
    metadata = folder / "metadata.csv"
    if metadata.is_file() and _is_chestxray_metadata(metadata):
        found.append(Found("covid-chestxray-dataset", str(folder), tuple(chestxray_files(folder, root))))
    labelled = [p for p in sorted(folder.iterdir()) if p.is_dir() and p.name in LABELS]
    if labelled:
        files = []
        for sub in labelled:
            for f in _folder_files(sub, "folder", sub.name, root):
                inner = pathlib.Path(f.path).relative_to(sub).parts
                # covid/<patient or series>/<slice>.png: the sub-folder is the group.
                group = f"series:{sub.name}/{inner[0]}" if len(inner) > 1 else f"file:{f.file_name}"
                files.append(dataclasses.replace(f, group=group))
        found.append(Found("folder", str(folder), tuple(files)))
    return found


def _folder_files(sub: pathlib.Path, source: str, label: str, base: pathlib.Path) -> list[InputFile]:
    """Every file under `sub` (recursively; hidden system files aside) as an input."""
    files = []
    for path in sorted(p for p in sub.rglob("*") if p.is_file()):
        if path.name in SKIPPED_NAMES:
            continue
        files.append(InputFile(source, label, str(path), display=path.relative_to(base).as_posix(),
                               group=f"file:{path.name}"))
    return files


def _label_folders(folder: pathlib.Path, source: str, base: pathlib.Path) -> list[InputFile]:
    files = []
    for label in LABELS:
        if (folder / label).is_dir():
            files.extend(_folder_files(folder / label, source, label, base))
    return files


def zip_files(archive: pathlib.Path, base: pathlib.Path) -> list[InputFile]:
    """The inputs of a covidct zip, read in place. Entries outside CT_COVID/ or CT_NonCOVID/
    are not ours and are ignored; unsafe entry names are recorded skips."""
    try:
        with zipfile.ZipFile(archive) as z:
            names = [i.filename for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:  # it may be the archive, cut short: say so
        return [InputFile("covid-ct", COVIDCT_FOLDERS.get(archive.stem.lower(), "non_covid"),
                          str(archive), display=archive.relative_to(base).as_posix(),
                          skip="corrupt_zip", skip_detail=f"{type(e).__name__}: {e}")]
    stem_label = COVIDCT_FOLDERS.get(archive.stem.lower())
    patients = noncovid_patients(base)
    files = []
    for name in sorted(names):
        display = f"{archive.relative_to(base).as_posix()}/{name}"
        if not is_safe_member(name):
            files.append(InputFile("covid-ct", stem_label or "non_covid", str(archive), name,
                                   display, skip="unsafe_zip_entry",
                                   skip_detail=f"entry {name!r} would escape the archive folder"))
            continue
        parts = name.split("/")
        label = next((COVIDCT_FOLDERS[p.lower()] for p in parts[:-1][:3] if p.lower() in COVIDCT_FOLDERS),
                     stem_label)
        if label is None or parts[-1] in SKIPPED_NAMES or parts[-1].startswith("._"):
            continue
        files.append(InputFile("covid-ct", label, str(archive), name, display,
                               group=covidct_group(parts[-1], label, patients)))
    return files


def is_safe_member(name: str) -> bool:
    """A zip entry name that stays inside its folder: relative, no `..`, no drive letter."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0]:
        return False
    return ".." not in name.split("/")


def _is_chestxray_metadata(path: pathlib.Path) -> bool:
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    return {"modality", "finding", "filename"} <= set(header)


def chestxray_files(root: pathlib.Path, base: pathlib.Path) -> list[InputFile]:
    """The CT rows of a covid-chestxray-dataset metadata.csv. Non-axial views (coronal
    reconstructions) and rows whose image is missing are recorded skips: the dataset is axial
    slices."""
    text = (root / "metadata.csv").read_text(encoding="utf-8", errors="replace")
    files = []
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("modality", "").strip().upper() != "CT":
            continue
        name = row.get("filename", "").strip()
        label = "covid" if "covid-19" in row.get("finding", "").lower() else "non_covid"
        folder = row.get("folder", "").strip()
        candidates = [root / folder / name, root / name] if folder else [root / name]
        path = next((p for p in candidates if p.is_file()), candidates[-1])
        display = path.relative_to(base).as_posix() if path.is_relative_to(base) else name
        skip, detail = None, ""
        if not is_safe_member(f"{folder}/{name}" if folder else name):
            skip, detail = "unsafe_path", f"metadata names {folder}/{name}"
        elif not path.is_file():
            skip, detail = "missing_file", f"metadata.csv lists {name} but it is not in {root.name}/"
        elif row.get("view", "").strip() and row.get("view", "").strip().lower() != "axial":
            skip, detail = "not_axial", f"view {row['view'].strip()!r}"
        patient = row.get("patientid", "").strip()
        group = f"patient:covid-chestxray-dataset/{patient}" if patient else f"file:{name}"
        files.append(InputFile("covid-chestxray-dataset", label, str(path), display=display,
                               skip=skip, skip_detail=detail, group=group))
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
