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

from tfds_covidct.covid_ct import cleaning, decode, dedupe
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
    box: str = ""  # the crop "x0,y0,x1,y1" in the original image
    notes: str = ""  # what cleaning did beyond the usual (colour marks, upscaling, ...)
    duplicate_of: str = ""
    split: str = ""
    signature: str = ""  # hex of the 32x32 de-duplication signature of the crop
    image: str = ""  # spool: the cleaned image (PNG)
    before: str = ""  # spool: thumbnail of the input with the crop box drawn
    after: str = ""  # spool: thumbnail of the cleaned image

    def reject(self, reason: str, detail: str) -> "Record":
        self.decision, self.reason, self.detail = "rejected", reason, detail
        return self


def process(item: InputFile, record_id: str, size: tuple[int, int], curation: Curation,
            spool: str) -> Record:
    """Reads, decodes and cleans one file. Never raises for a bad file: it returns a rejection."""
    record = Record(id=record_id, source=item.source, label=item.label, file_name=item.file_name)
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
    if rule is not None and rule.action == "exclude":
        record.before = _thumb(decoded.gray, None, f"{stem}.before.png")
        return record.reject("curated_exclude", f"{rule.reason} ({rule.origin})")
    try:
        cleaned = cleaning.clean(decoded.gray, decoded.colour_mask, size,
                                 box=rule.box if rule is not None else None)
    except cleaning.TooSmallError as e:
        record.before = _thumb(decoded.gray, None, f"{stem}.before.png")
        return record.reject("too_small", str(e))
    except ValueError as e:  # a curated box outside the image
        record.before = _thumb(decoded.gray, None, f"{stem}.before.png")
        return record.reject("bad_curated_box", f"{e} ({rule.origin if rule else ''})")
    record.box = ",".join(str(v) for v in cleaned.box)
    record.notes = ";".join(cleaned.notes + ((f"curated: {rule.reason}",) if rule else ()))
    x0, y0, x1, y1 = cleaned.box
    record.signature = dedupe.signature(decoded.gray[y0:y1, x0:x1]).tobytes().hex()
    record.image = f"{stem}.png"
    Image.fromarray(cleaned.image).save(record.image, compress_level=1)
    record.before = _thumb(decoded.gray, cleaned.box, f"{stem}.before.png")
    record.after = _thumb(cleaned.image, None, f"{stem}.after.png")
    return record


def _thumb(gray: np.ndarray, box: tuple[int, int, int, int] | None, path: str) -> str:
    """A small RGB picture for the contact sheet; the crop box is drawn in red."""
    image = Image.fromarray(gray).convert("RGB")
    if box is not None:
        width = max(1, round(max(image.size) / THUMB))
        ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1),
                                        outline=(255, 40, 40), width=width)
    scale = THUMB / max(image.size)  # small outputs (28x28) are enlarged to be seen
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.NEAREST if scale > 1 else Image.BILINEAR)
    image.save(path, compress_level=1)
    return path
