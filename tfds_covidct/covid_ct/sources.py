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

CT volumes (see volumes.py) wherever they are: a NIfTI file (`.nii`, `.nii.gz`) is one input; the
DICOM files of one folder (`.dcm`, or extension-less files with the DICM preamble) are one input,
split into series by SeriesInstanceUID when read. Their label: the labelled folder they are in
(`covid/`, `non_covid/`, a MosMedData `CT-0` ... `CT-4` folder; any depth), else a labels CSV
(`labels_csv`, or `labels.csv` at the top of manual_dir; it wins over a folder), else they are
recorded skips (`no_label`). Volumes outside the other layouts are source "volumes"; the
covid-chestxray-dataset's `.nii.gz` rows are volumes of that source.
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
LABELS_CSV = "labels.csv"  # a volume collection's labels, found at the top of manual_dir
SKIPPED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini", "metadata.csv", SYNTHETIC_MARKER,
                 NONCOVID_METADATA, LABELS_CSV}
VOLUMES_SOURCE = "volumes"
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
    # A CT volume: "nifti" (path is the file) or "dicom" (path is a folder, members its DICOM files).
    volume: str = ""
    members: tuple[str, ...] = ()

    @property
    def file_name(self) -> str:
        return posixpath.basename(self.member) if self.member else pathlib.Path(self.path).name

    def describe_volume(self) -> str:
        return (f"DICOM folder of {len(self.members)} files" if self.volume == "dicom"
                else "NIfTI file" if self.volume == "nifti" else "")

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
        volumes = sum(1 for f in self.files if f.volume)
        return (f"found source {self.kind} at {self.root}: {len(self.files)} files"
                + (f", {volumes} of them CT volumes" if volumes else "")
                + (f" ({skipped} skipped by layout)" if skipped else ""))


def discover(manual_dir: str | None, labels_csv: str | None = None) -> list[Found]:
    """Every recognisable source in `manual_dir`; DatasetError when there is nothing to build.

    `labels_csv` labels volumes (see `read_labels`); default `labels.csv` at the top of manual_dir.
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
        found = [_relabel(f, labels, root) for f in found]
    claimed = {f.path for src in found for f in src.files if f.volume}
    others = [v for v in volume_inputs(root, root) if v.path not in claimed]
    if others:
        files = tuple(_label_volume(v, labels, root, labels_csv) for v in others)
        if all(f.skip for f in files) and not any(not f.skip for src in found for f in src.files):
            raise DatasetError(
                f"manual_dir {manual_dir!r} holds {len(files)} CT volume(s) but none has a label: put "
                "them under covid/ and non_covid/ folders, or pass a labels CSV (--labels-csv FILE, "
                f"or {LABELS_CSV} at the top of manual_dir) with columns path,label "
                f"(first unlabelled: {files[0].display})")
        found.append(Found(VOLUMES_SOURCE, str(root), files))
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
                if f.volume == "dicom":  # the folder of a series: covid/<patient>/ is its group
                    inner += ("",)
                # covid/<patient or series>/<slice>.png: the sub-folder is the group.
                group = (f"series:{sub.name}/{inner[0]}" if len(inner) > 1
                         else f.group if f.volume else f"file:{f.file_name}")
                files.append(dataclasses.replace(f, group=group))
        found.append(Found("folder", str(folder), tuple(files)))
    return found


def _folder_files(sub: pathlib.Path, source: str, label: str, base: pathlib.Path) -> list[InputFile]:
    """Every file under `sub` (recursively; hidden system files aside) as an input; CT volumes
    (NIfTI files, folders of DICOM files) as one input each."""
    volumes = volume_inputs(sub, base, source, label)
    in_volumes = {str(pathlib.Path(v.path) / m) for v in volumes for m in v.members}
    in_volumes |= {v.path for v in volumes}
    files = []
    for path in sorted(p for p in sub.rglob("*") if p.is_file()):
        if path.name in SKIPPED_NAMES or str(path) in in_volumes:
            continue
        files.append(InputFile(source, label, str(path), display=path.relative_to(base).as_posix(),
                               group=f"file:{path.name}"))
    return files + volumes


def volume_inputs(folder: pathlib.Path, base: pathlib.Path, source: str = VOLUMES_SOURCE,
                  label: str = "") -> list[InputFile]:
    """The CT volumes under `folder`: each NIfTI file, and each folder's DICOM files, as one input
    (group `volume:<path>`; the reader puts a DICOM PatientID in its place)."""
    from tfds_covidct.covid_ct import volumes

    dicom: dict[pathlib.Path, list[str]] = {}
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if volumes.is_nifti(path.name):
            display = path.relative_to(base).as_posix()
            out.append(InputFile(source, label, str(path), display=display, group=f"volume:{display}",
                                 volume="nifti"))
        elif path.name not in SKIPPED_NAMES and volumes.is_dicom_file(path):
            dicom.setdefault(path.parent, []).append(path.name)
    for parent, names in sorted(dicom.items()):
        display = parent.relative_to(base).as_posix() if parent != base else "."
        out.append(InputFile(source, label, str(parent), display=display + "/",
                             group=f"volume:{display}", volume="dicom", members=tuple(sorted(names))))
    return out


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


def _volume_keys(item: InputFile, root: pathlib.Path) -> list[str]:
    path = pathlib.Path(item.path)
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    name = path.name
    stem = re.sub(r"\.nii(\.gz)?$", "", name, flags=re.IGNORECASE)
    rel_stem = re.sub(r"\.nii(\.gz)?$", "", rel, flags=re.IGNORECASE)
    return [rel, rel_stem, name, stem]


def _lookup(item: InputFile, labels: dict, root: pathlib.Path) -> tuple[str, str] | None:
    return next((labels[k] for k in _volume_keys(item, root) if k in labels), None)


def _with_label(item: InputFile, label: str, patient: str, note: str = "") -> InputFile:
    group = f"patient:{VOLUMES_SOURCE}/{patient}" if patient else item.group
    return dataclasses.replace(item, label=label, group=group, skip_detail=note or item.skip_detail)


def _relabel(found: "Found", labels: dict, root: pathlib.Path) -> "Found":
    """The labels CSV wins over a folder's label for the volumes it lists."""
    files = []
    for f in found.files:
        hit = _lookup(f, labels, root) if f.volume else None
        files.append(_with_label(f, *hit) if hit else f)
    return dataclasses.replace(found, files=tuple(files))


def _label_volume(item: InputFile, labels: dict, root: pathlib.Path, labels_csv: str | None) -> InputFile:
    """A volume outside the other layouts: labelled by the CSV, else by a labelled folder above it
    (covid/, non_covid/, CT-0..CT-4), else a recorded skip."""
    hit = _lookup(item, labels, root)
    if hit:
        return _with_label(item, *hit)
    rel = pathlib.Path(item.path).relative_to(root)
    parts = rel.parts if item.volume == "dicom" else rel.parts[:-1]
    for i in range(len(parts) - 1, -1, -1):
        label = FOLDER_LABELS.get(parts[i].lower())
        if label:
            below = parts[i + 1:i + 2]
            group = (f"series:{parts[i]}/{below[0]}" if below and item.volume == "dicom"
                     else item.group)
            return dataclasses.replace(item, label=label, group=group)
    where = f"not listed in {labels_csv}" if labels_csv else "no labels CSV given"
    return dataclasses.replace(item, label="non_covid", skip="no_label", skip_detail=(
        f"{item.describe_volume()} outside covid/ non_covid/ (or CT-0..CT-4) folders and {where}"))


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
        from tfds_covidct.covid_ct import volumes

        files.append(InputFile("covid-chestxray-dataset", label, str(path), display=display,
                               skip=skip, skip_detail=detail, group=group,
                               volume="nifti" if volumes.is_nifti(name) else ""))
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
