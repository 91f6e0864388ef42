"""Result rows: one figure each, printed as a table and written as JSON.

A row holds its figure (`value`, `unit`), the figure it is held against (`reference`) and their
`ratio`, and, where the issue sets one, a `target`. The target applies to the ratio when there is
a reference, otherwise to the value; `better` says which way is good; `met` is null without a target.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Iterable

KEYS = ("name", "value", "unit", "reference", "ratio", "target", "met", "better", "note")


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    value: float
    unit: str
    reference: float | None = None
    ratio: float | None = None
    target: float | None = None
    met: bool | None = None
    better: str = "higher"  # or "lower"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def row(
    name: str,
    value: float,
    unit: str,
    reference: float | None = None,
    target: float | None = None,
    better: str = "higher",
    note: str = "",
) -> Row:
    """A row with its ratio and `met` worked out (a non-finite figure never meets a target)."""
    value = float(value)
    ratio = None
    if reference is not None:
        reference = float(reference)
        ratio = value / reference if reference else math.nan
    met = None
    if target is not None:
        figure = ratio if ratio is not None else value
        met = math.isfinite(figure) and (figure >= target if better == "higher" else figure <= target)
    return Row(name, value, unit, reference, ratio, target, met, better, note)


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return ""
    if not math.isfinite(x):
        return str(x)
    if x == 0 or 0.01 <= abs(x) < 1e6:
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.0f}"
    return f"{x:.3g}"


def table(rows: Iterable[Row]) -> str:
    """A GitHub-markdown table (it reads in a terminal and pastes into the README)."""
    lines = ["| benchmark | value | unit | reference | ratio | target | met |",
             "|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        target = "" if r.target is None else ("≥ " if r.better == "higher" else "≤ ") + _fmt(r.target)
        met = {None: "", True: "yes", False: "**MISSED**"}[r.met]
        lines.append(f"| {r.name} | {_fmt(r.value)} | {r.unit} | {_fmt(r.reference)} | "
                     f"{_fmt(r.ratio)} | {target} | {met} |")
    return "\n".join(lines)


def notes(rows: Iterable[Row]) -> str:
    return "\n".join(f"- {r.name}: {r.note}" for r in rows if r.note)


def write_json(rows: Iterable[Row], path: str | pathlib.Path) -> None:
    """Non-finite numbers become null: strict JSON has no NaN."""
    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v
    data = [{k: clean(v) for k, v in r.to_dict().items()} for r in rows]
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")


def without_verdict(r: Row) -> Row:
    """The row with no target and no verdict (for runs whose figures are not meaningful)."""
    return dataclasses.replace(r, target=None, met=None)


def missed(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r.met is False]
