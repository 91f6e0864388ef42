"""A radiologist's corrections as data: exclude a file, or crop it by hand.

`curation.csv` ships beside the builder; a `curation.csv` at the top of manual_dir adds to it
(and wins on the same key). Columns: `key` (a file name or a sha256 of the file's bytes),
`action` (`exclude` or `crop`), `box` (`x0,y0,x1,y1` in the original image's pixels, for crop),
`reason` (free text, copied into the audit).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import pathlib
import re

from tfds_covidct.errors import DatasetError

FILE_NAME = "curation.csv"
SHIPPED = pathlib.Path(__file__).with_name(FILE_NAME)
ACTIONS = ("exclude", "crop")
COLUMNS = ("key", "action", "box", "reason")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class Rule:
    key: str
    action: str
    box: tuple[int, int, int, int] | None
    reason: str
    origin: str  # "file:line", for error messages and the audit


class Curation:
    """Rules by sha256 and by file name; a sha256 rule wins over a name rule."""

    def __init__(self, rules: list[Rule]):
        self.by_sha = {r.key: r for r in rules if _SHA256.match(r.key)}
        self.by_name = {r.key: r for r in rules if not _SHA256.match(r.key)}

    def __len__(self) -> int:
        return len(self.by_sha) + len(self.by_name)

    def lookup(self, sha256: str, file_name: str) -> Rule | None:
        return self.by_sha.get(sha256) or self.by_name.get(file_name)


def parse(text: str, origin: str) -> list[Rule]:
    """Parses curation CSV text; a malformed row is a DatasetError naming the row."""
    reader = csv.DictReader(io.StringIO(text))
    missing = set(COLUMNS) - set(reader.fieldnames or [])
    if missing:
        raise DatasetError(f"{origin}: missing column(s) {sorted(missing)}; expected {list(COLUMNS)}")
    rules = []
    for line, row in enumerate(reader, start=2):
        where = f"{origin}:{line}"
        key = (row["key"] or "").strip()
        action = (row["action"] or "").strip().lower()
        if not key or key.startswith("#"):
            continue
        if action not in ACTIONS:
            raise DatasetError(f"{where}: action {action!r} is not one of {list(ACTIONS)}")
        box = None
        if action == "crop":
            box = _parse_box(row["box"] or "", where)
        rules.append(Rule(key.lower() if _SHA256.match(key.lower()) else key, action, box,
                          (row["reason"] or "").strip(), where))
    return rules


def load(manual_dir: str | None) -> Curation:
    """The shipped rules plus manual_dir's own `curation.csv` (which wins on the same key)."""
    rules = parse(SHIPPED.read_text(encoding="utf-8"), SHIPPED.name)
    if manual_dir:
        local = pathlib.Path(manual_dir) / FILE_NAME
        if local.is_file():
            rules += parse(local.read_text(encoding="utf-8"), str(local))
    return Curation(rules)


def _parse_box(text: str, where: str) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(v) for v in text.split(","))
    except ValueError:
        raise DatasetError(f"{where}: crop box {text!r} is not 'x0,y0,x1,y1' (integers)") from None
    if x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0:
        raise DatasetError(f"{where}: crop box {text!r} needs 0 <= x0 < x1 and 0 <= y0 < y1")
    return x0, y0, x1, y1
