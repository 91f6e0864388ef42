"""What a layout hands on: one `InputFile` per input, grouped in a `Found` source; and the walk of a
folder that every layout shares (its files, its CT volumes, its dangling links).

A dangling symbolic link (a git-annex or DataLad file whose content was never fetched, or a link
whose target was moved) is an input like any other and a recorded skip, `dangling_link`, with the
link's target and what to do: it is counted in the audit, never silently dropped. Outside the
layouts' folders, only links named as volumes (`.nii`, `.nii.gz`, `.dcm`) are recognisable.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import posixpath
import zipfile

MAX_FILE_BYTES = 64 * 1024 * 1024  # no CT figure is this big; larger files are refused unread
SYNTHETIC_MARKER = "SYNTHETIC_PHANTOMS.json"
SYNTHETIC_SOURCE = "synthetic_phantom"
NONCOVID_METADATA = "NonCOVID-CT-MetaInfo.csv"
LABELS_CSV = "labels.csv"  # a volume collection's labels, found at the top of manual_dir
# Files that are never inputs: system litter and the layouts' own metadata.
SKIPPED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini", "metadata.csv", SYNTHETIC_MARKER,
                 NONCOVID_METADATA, LABELS_CSV}
VOLUMES_SOURCE = "volumes"
DANGLING = "dangling_link"
# Where git-annex keeps content: a link into it points at a file the annex has not fetched.
ANNEX_OBJECTS = "annex/objects/"


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input: where its bytes are, and what the layout says about it.

    `path` is a file, or a zip when `member` is set. `skip` is a reason decided before reading
    (an unsafe zip entry, a non-CT metadata row, a dangling link...): such a file gets an audit
    row but is not read.
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


def is_safe_member(name: str) -> bool:
    """A zip entry (or metadata) name that stays inside its folder: relative, no `..`, no drive."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0]:
        return False
    return ".." not in name.split("/")


def is_dangling(path: pathlib.Path) -> bool:
    """A symbolic link whose target does not exist."""
    return path.is_symlink() and not path.exists()


def dangling_why(path: pathlib.Path) -> str:
    """The audit detail of a dangling link: its target, and what fetching it takes."""
    target = os.readlink(path)
    if ANNEX_OBJECTS in target.replace(os.sep, "/"):
        return (f"a symbolic link to {target}, not fetched: a git-annex/DataLad file whose content "
                "is not here (run `datalad get` or `git annex get` on it, then build again)")
    return f"a symbolic link to {target}, which does not exist (moved, deleted or not copied)"


def dangling_input(path: pathlib.Path, source: str, label: str, base: pathlib.Path,
                   volume: str = "") -> InputFile:
    display = path.relative_to(base).as_posix()
    return InputFile(source, label, str(path), display=display, skip=DANGLING,
                     skip_detail=dangling_why(path), group=f"file:{path.name}", volume=volume)


def folder_files(sub: pathlib.Path, source: str, label: str, base: pathlib.Path) -> list[InputFile]:
    """Every file under `sub` (recursively; hidden system files aside) as an input; CT volumes
    (NIfTI files, folders of DICOM files) as one input each; dangling links as recorded skips."""
    volumes = volume_inputs(sub, base, source, label)
    in_volumes = {str(pathlib.Path(v.path) / m) for v in volumes for m in v.members}
    in_volumes |= {v.path for v in volumes}
    files = []
    for path in sorted(sub.rglob("*")):
        if path.name in SKIPPED_NAMES or str(path) in in_volumes:
            continue
        if is_dangling(path):
            files.append(dangling_input(path, source, label, base))
        elif path.is_file():
            files.append(InputFile(source, label, str(path), display=path.relative_to(base).as_posix(),
                                   group=f"file:{path.name}"))
    return files + volumes


def volume_inputs(folder: pathlib.Path, base: pathlib.Path, source: str = VOLUMES_SOURCE,
                  label: str = "") -> list[InputFile]:
    """The CT volumes under `folder`: each NIfTI file, and each folder's DICOM files, as one input
    (group `volume:<path>`; the reader puts a DICOM PatientID in its place). Dangling links named
    as volumes are recorded skips (a DICOM folder's missing file then shows as missing slices)."""
    from tfds_covidct.covid_ct import volumes

    dicom: dict[pathlib.Path, list[str]] = {}
    out = []
    for path in sorted(folder.rglob("*")):
        nifti = volumes.is_nifti(path.name)
        if is_dangling(path):
            if nifti or path.suffix.lower() == ".dcm":
                out.append(dangling_input(path, source, label, base, "nifti" if nifti else ""))
        elif not path.is_file():
            continue
        elif nifti:
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
