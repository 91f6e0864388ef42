"""One input file -> one audit record, with its cleaned image and thumbnails in a spool folder.

Runs in worker processes: it imports numpy/Pillow/scipy only (no TensorFlow), takes and returns
small picklable values, and writes its pixels to disk so that the parent never holds all images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

import numpy as np
from PIL import Image, ImageDraw

from tfds_covidct.covid_ct import cleaning, decode, dedupe, volumes
from tfds_covidct.covid_ct.curation import Curation
from tfds_covidct.covid_ct.sources import InputFile

THUMB = 112  # contact sheet tile side
SHOWN_SKIPS = ("not_axial",)


@dataclasses.dataclass
class Record:
    """The audit row of one input file (decision filled in by the pipeline after de-duplication)."""

    id: str
    source: str
    label: str
    file_name: str
    sha256: str = ""
    bytes: int = 0
    format: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    decision: str = ""  # kept | duplicate | rejected
    reason: str = ""  # why rejected or duplicate (a short code)
    detail: str = ""  # the human-readable why
    box: str = ""  # the crop "x0,y0,x1,y1" in the original (upright) image, of this config's framing
    body_box: str = ""  # the body crop "x0,y0,x1,y1" (framing "body")
    lung_box: str = ""  # the lung-field crop "x0,y0,x1,y1" (framing "lungs"), empty if none found
    notes: str = ""  # what decoding and cleaning did beyond the usual (EXIF turn, window, marks...)
    duplicate_of: str = ""  # the family's keeper
    family: str = ""  # the keeper's id for every member of a near-duplicate family (size > 1)
    group: str = ""  # the source's patient/paper/series key (see sources.InputFile.group)
    split_group: str = ""  # the group the split was drawn for: groups joined through families
    split: str = ""
    signature: str = ""  # hex of the 64x64 de-duplication thumbnail of the frame (dedupe.thumbnail)
    volume: str = ""  # a CT volume's id (its input, `@n` for the n-th series of a DICOM folder)
    slice: str = ""  # which slice of it: "slice <index>/<count> z=<mm> lungs=<cm2>"
    image: str = ""  # spool: the cleaned image (PNG)
    before: str = ""  # spool: thumbnail of the input with the crop box drawn
    after: str = ""  # spool: thumbnail of the cleaned image

    def reject(self, reason: str, detail: str) -> "Record":
        self.decision, self.reason, self.detail = "rejected", reason, detail
        return self


def process(item: InputFile, record_id: str, size: tuple[int, int], curation: Curation,
            spool: str, framing: str = "body") -> Record:
    """Reads, decodes and cleans one file to (height, width) = `size` in `framing` ("body" or
    "lungs"). Never raises for a bad file: it returns a rejection record."""
    record = Record(id=record_id, source=item.source, label=item.label, file_name=item.file_name,
                    group=item.group)
    # Spool files are named by the input, not its content: two copies may be curated differently.
    stem = pathlib.Path(spool) / hashlib.sha256(record_id.encode()).hexdigest()[:32]
    if item.skip:
        if item.skip in SHOWN_SKIPS:  # a readable image left out by layout: show it on the sheet
            try:
                record.before = _thumb(decode.decode(item.read()).gray, None, f"{stem}.before.png")
            except (OSError, ValueError):
                pass
        return record.reject(item.skip, item.skip_detail)
    try:
        data = item.read()
    except (OSError, ValueError, KeyError) as e:
        return record.reject("unreadable", f"{type(e).__name__}: {e}")
    record.sha256 = hashlib.sha256(data).hexdigest()
    record.bytes = len(data)
    rule = curation.lookup(record.sha256, item.file_name)
    try:
        decoded = decode.decode(data)
    except decode.DecodeError as e:
        return record.reject(e.reason, e.detail)
    record.format, record.mode = decoded.format, decoded.mode
    record.width, record.height = decoded.width, decoded.height
    decode_notes = list(decoded.notes)
    if rule is not None and rule.action == "exclude":
        record.before = _thumb(decoded.gray, None, f"{stem}.before.png")
        return record.reject("curated_exclude", f"{rule.reason} ({rule.origin})")
    record.notes = ";".join(decode_notes)
    return _clean_into(record, decoded.gray, decoded.colour_mask, rule, stem, size, framing)


def _clean_into(record: Record, gray: np.ndarray, colour_mask: np.ndarray | None, rule, stem: str,
                size: tuple[int, int], framing: str) -> Record:
    """The shared tail of an image and a volume slice: content check, cleaning, framing, the
    de-duplication signature, the spooled image and thumbnails. `record.notes` holds what came
    before (decoding); cleaning's notes are added."""
    decode_notes = [n for n in record.notes.split(";") if n]
    contrast = cleaning.coarse_contrast(gray)
    if contrast < cleaning.MIN_COARSE_CONTRAST:
        record.before = _thumb(gray, None, f"{stem}.before.png")
        return record.reject("no_scan_content", (
            f"coarse contrast {contrast:.1f} grey levels (std of the 32x32 block means) is under "
            f"{cleaning.MIN_COARSE_CONTRAST:g}: a flat, blank or noise-only image"))
    try:
        cleaned = cleaning.clean(gray, colour_mask, size,
                                 box=rule.box if rule is not None else None, framing=framing)
    except cleaning.TooSmallError as e:
        record.before = _thumb(gray, None, f"{stem}.before.png")
        return record.reject("too_small", str(e))
    except ValueError as e:  # a curated box outside the image
        record.before = _thumb(gray, None, f"{stem}.before.png")
        return record.reject("bad_curated_box", f"{e} ({rule.origin if rule else ''})")
    record.box = _box_text(cleaned.box)
    record.body_box = _box_text(cleaned.body_box)
    record.lung_box = _box_text(cleaned.lung_box)
    record.notes = ";".join(decode_notes + list(cleaned.notes)
                            + ([f"curated: {rule.reason}"] if rule else []))
    # De-duplication looks at the frame (flat borders trimmed), not at the crop: a re-cropped copy
    # moves the body box, never the scan's own pixels.
    x0, y0, x1, y1 = cleaning.trim_uniform_borders(gray)
    record.signature = dedupe.thumbnail(gray[y0:y1, x0:x1]).tobytes().hex()
    record.image = f"{stem}.png"
    Image.fromarray(cleaned.image).save(record.image, compress_level=1)
    record.before = _thumb(gray, cleaned.body_box or cleaned.box, f"{stem}.before.png",
                           lungs=cleaned.lung_box)
    record.after = _thumb(cleaned.image, None, f"{stem}.after.png")
    return record


def process_any(item: InputFile, record_id: str, size: tuple[int, int], curation: Curation,
                spool: str, framing: str = "body",
                volume_options: volumes.Options | None = None) -> list[Record]:
    """`process` for an image, `process_volume` for a CT volume: the records of one input."""
    if item.volume:
        return process_volume(item, record_id, size, curation, spool, framing,
                              volume_options or volumes.Options())
    return [process(item, record_id, size, curation, spool, framing)]


def process_volume(item: InputFile, record_id: str, size: tuple[int, int], curation: Curation,
                   spool: str, framing: str = "body",
                   options: volumes.Options = volumes.Options()) -> list[Record]:
    """Reads a CT volume (or a folder of DICOM series) and cleans its chosen slices, one record per
    slice (id `<volume>#<index>`, file name `<volume name>#<index>`), or one rejected record per
    volume that cannot be used. Never raises for a bad volume.

    Each slice's record says which volume it came from (`volume`), where in it (`slice`: index of
    the count from the most inferior, z in mm, lung area) and, in `notes`, the volume's summary
    (size, lung range, every slice taken): the audit shows per volume which slices were taken.
    """
    base = Record(id=record_id, source=item.source, label=item.label, file_name=item.file_name,
                  group=item.group, volume=record_id)
    if item.skip:
        return [base.reject(item.skip, item.skip_detail)]
    read = volumes.read(item.path, item.members, options)
    records = []
    for n, volume in enumerate(read):
        volume_id = record_id if len(read) == 1 else f"{record_id}@{n}"
        if isinstance(volume, volumes.VolumeError):
            rejected = dataclasses.replace(base, id=volume_id, volume=volume_id)
            records.append(rejected.reject(volume.reason, volume.detail))
            continue
        group = item.group
        if volume.patient and volume.patient.strip().lower() not in GENERIC_PATIENT_IDS:
            group = f"patient:dicom/{volume.patient.strip()}"
        elif volume.series and not item.group.startswith(("series:", "patient:")):
            group = f"series:dicom/{volume.series}"
        summary = f"volume: {volume.describe()}; {options.describe()}"
        for s in volume.slices:
            slice_id = f"{volume_id}#{s.index:04d}"
            record = Record(id=slice_id, source=item.source, label=item.label,
                            file_name=f"{item.file_name}#{s.index:04d}", group=group,
                            volume=volume_id, slice=s.describe())
            record.sha256 = hashlib.sha256(s.gray.tobytes() + str(s.gray.shape).encode()).hexdigest()
            record.bytes = int(s.gray.nbytes)
            record.format, record.mode = volume.format, "HU"
            record.height, record.width = s.gray.shape
            record.notes = ";".join([f"lung_window_W{options.window_width:g}_L{options.window_level:g}",
                                     *volume.notes])
            record.detail = summary
            stem = str(pathlib.Path(spool) / hashlib.sha256(slice_id.encode()).hexdigest()[:32])
            rule = curation.lookup(record.sha256, record.file_name)
            if rule is not None and rule.action == "exclude":
                record.before = _thumb(s.gray, None, f"{stem}.before.png")
                records.append(record.reject("curated_exclude", f"{rule.reason} ({rule.origin})"))
                continue
            records.append(_clean_into(record, s.gray, None, rule, stem, size, framing))
    return records


# PatientIDs that anonymisers write for everyone: they name no one, so they group nothing.
GENERIC_PATIENT_IDS = {"", "anonymous", "anon", "anonymized", "anonymised", "unknown", "0", "none",
                       "patient", "n/a", "na"}


def _box_text(box: tuple[int, int, int, int] | None) -> str:
    return ",".join(str(v) for v in box) if box is not None else ""


def _thumb(gray: np.ndarray, box: tuple[int, int, int, int] | None, path: str,
           lungs: tuple[int, int, int, int] | None = None) -> str:
    """A small RGB picture for the contact sheet: the body box in red, the lung box in green."""
    image = Image.fromarray(gray).convert("RGB")
    width = max(1, round(max(image.size) / THUMB))
    for b, colour in ((box, (255, 40, 40)), (lungs, (40, 230, 40))):
        if b is not None:
            ImageDraw.Draw(image).rectangle((b[0], b[1], b[2] - 1, b[3] - 1), outline=colour, width=width)
    scale = THUMB / max(image.size)  # small outputs (28x28) are enlarged to be seen
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.NEAREST if scale > 1 else Image.BILINEAR)
    image.save(path, compress_level=1)
    return path
