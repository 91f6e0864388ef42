"""The audit of a build: one row per input file (CSV + JSON), counts, and a contact sheet.

A person checks the build by looking at one picture: a sample of inputs before (body box in red,
lung box in green) and after cleaning; every rejected file with its reason; every near-duplicate
family side by side (which one was kept, the others' evidence); and the largest patient/paper
groups, one row each, with the split every member went to (one split per row, or it is a leak).
"""

from __future__ import annotations

import collections
import csv
import json
import pathlib

from PIL import Image, ImageDraw

from tfds_covidct.covid_ct.process import THUMB, Record

CSV_NAME, JSON_NAME, SHEET_NAME, LOG_NAME = "audit.csv", "audit.json", "contact_sheet.png", "build.log"
COLUMNS = ("id", "source", "label", "file_name", "decision", "reason", "detail", "box", "body_box",
           "lung_box", "duplicate_of", "family", "group", "split_group", "split", "notes", "sha256",
           "bytes", "format", "mode", "width", "height", "volume", "slice")
GROUP_ROWS = 10  # groups shown on the contact sheet (the largest)
VOLUME_ROWS = 12  # CT volumes shown on the contact sheet, one row each with the slices taken
GROUP_MEMBERS = 10  # members shown per group or family row
SAMPLE = 36  # kept files shown before/after on the contact sheet
PAIRS_PER_ROW = 6
CAPTION = 26


def summarise(records: list[Record]) -> dict:
    """Counts: found, kept (per split and label), duplicates, rejected by reason."""
    decisions = collections.Counter(r.decision for r in records)
    rejected = collections.Counter(r.reason for r in records if r.decision == "rejected")
    kept = [r for r in records if r.decision == "kept"]
    return {
        "found": len(records),
        "kept": decisions["kept"],
        "duplicates": decisions["duplicate"],
        "rejected": decisions["rejected"],
        "rejected_by_reason": dict(sorted(rejected.items())),
        "splits": dict(sorted(collections.Counter(r.split for r in kept).items())),
        "labels": dict(sorted(collections.Counter(r.label for r in kept).items())),
        "sources": dict(sorted(collections.Counter(r.source for r in kept).items())),
        "families": len({r.family for r in records if r.family}),
        "family_members": sum(1 for r in records if r.family),
        "groups": len({r.split_group for r in kept}),
        "test_groups": len({r.split_group for r in kept if r.split == "test"}),
        "groups_in_both_splits": len(groups_in_both_splits(records)),
        "volumes": volume_counts(records),
    }


def volume_counts(records: list[Record]) -> dict:
    """CT volumes: how many were found, gave kept slices, were rejected whole; slices taken/kept."""
    ids = {r.volume for r in records if r.volume}
    whole = {r.volume for r in records if r.volume and not r.slice}  # a volume-level rejection
    used = {r.volume for r in records if r.volume and r.decision == "kept"}
    return {"found": len(ids), "used": len(used), "rejected": len(whole),
            "slices_taken": sum(1 for r in records if r.slice),
            "slices_kept": sum(1 for r in records if r.slice and r.decision == "kept")}


def groups_in_both_splits(records: list[Record]) -> list[str]:
    """The (joined) groups with kept scans in both splits: empty for a sound build."""
    splits: dict[str, set[str]] = collections.defaultdict(set)
    for r in records:
        if r.decision == "kept":
            splits[r.split_group].add(r.split)
            if r.group:
                splits[r.group].add(r.split)
    return sorted(g for g, s in splits.items() if len(s) > 1)


def summary_line(summary: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in summary["rejected_by_reason"].items())
    vol = summary.get("volumes") or {}
    per_source = ", ".join(f"{k} {v}" for k, v in summary.get("sources", {}).items())
    volumes_text = (f"; CT volumes {vol['found']} ({vol['used']} used, {vol['rejected']} rejected) "
                    f"-> {vol['slices_taken']} slices, {vol['slices_kept']} kept"
                    if vol.get("found") else "")
    return (f"found {summary['found']}, kept {summary['kept']} "
            f"(train {summary['splits'].get('train', 0)}, test {summary['splits'].get('test', 0)}; "
            f"{summary.get('groups', 0)} groups, {summary.get('test_groups', 0)} in test, "
            f"{summary.get('groups_in_both_splits', 0)} in both), "
            f"duplicates {summary['duplicates']} ({summary.get('families', 0)} families), "
            f"rejected {summary['rejected']}"
            + (f" ({reasons})" if reasons else "")
            + (f"; kept per source: {per_source}" if per_source else "") + volumes_text)


def write(records: list[Record], out_dir: pathlib.Path, header: dict, log_lines: list[str]) -> dict[str, str]:
    """Writes audit.csv, audit.json, contact_sheet.png and build.log into out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{k: getattr(r, k) for k in COLUMNS} for r in records]
    summary = summarise(records)
    with (out_dir / CSV_NAME).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    document = {**header, "summary": summary, "rows": rows}
    (out_dir / JSON_NAME).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    contact_sheet(records, out_dir / SHEET_NAME, f"{header.get('title', '')}  {summary_line(summary)}")
    lines = log_lines + [f"{header.get('title', '')}: {summary_line(summary)}"]
    (out_dir / LOG_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"csv": str(out_dir / CSV_NAME), "json": str(out_dir / JSON_NAME),
            "contact_sheet": str(out_dir / SHEET_NAME), "log": str(out_dir / LOG_NAME)}


def sample_kept(records: list[Record], n: int = SAMPLE) -> list[Record]:
    """An even, deterministic spread of kept files (by sha256)."""
    kept = sorted((r for r in records if r.decision == "kept"), key=lambda r: r.sha256)
    if len(kept) <= n:
        return kept
    step = len(kept) / n
    return [kept[int(i * step)] for i in range(n)]


def contact_sheet(records: list[Record], path: pathlib.Path, title: str) -> None:
    """One PNG: before/after pairs of a sample of kept files (body box red, lung box green), every
    rejected file with its reason, every near-duplicate family (one row each, keeper first), and
    the largest groups (one row each, every tile captioned with its split)."""
    tiles = [(r, True) for r in sample_kept(records)]
    tiles += [(r, False) for r in records if r.decision == "rejected"]
    family_rows = _family_rows(records)
    group_rows = _group_rows(records)
    volume_rows = _volume_rows(records)
    pair_w, tile_h = 2 * THUMB + 6, THUMB + CAPTION
    rows = max(1, -(-len(tiles) // PAIRS_PER_ROW))
    width = max(PAIRS_PER_ROW * pair_w, GROUP_MEMBERS * (THUMB + 4))
    height = (30 + rows * tile_h + (len(family_rows) + len(group_rows) + len(volume_rows)) * (tile_h + 16)
              + 3 * 24)
    sheet = Image.new("RGB", (width, height), (40, 40, 48))
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 8), title[:240], fill=(255, 255, 120))
    for i, (record, kept) in enumerate(tiles):
        x, y = (i % PAIRS_PER_ROW) * pair_w, 30 + (i // PAIRS_PER_ROW) * tile_h
        _paste(sheet, record.before, x, y)
        if kept:
            _paste(sheet, record.after, x + THUMB + 2, y)
            caption, colour = f"{record.label} {record.split}", (200, 220, 255)
        else:
            draw.text((x + THUMB + 6, y + 4), "REJECTED", fill=(255, 90, 90))
            for j, line in enumerate(_wrap(record.detail, 20)[:6]):
                draw.text((x + THUMB + 6, y + 18 + 13 * j), line, fill=(255, 170, 170))
            caption, colour = record.reason, (255, 120, 120)
        draw.text((x + 2, y + THUMB + 1), record.file_name[:38], fill=(230, 230, 230))
        draw.text((x + 2, y + THUMB + 13), caption[:38], fill=colour)
    y = 30 + rows * tile_h
    draw.text((6, y + 6), f"NEAR-DUPLICATE FAMILIES ({len(family_rows)}): keeper first, then its copies",
              fill=(120, 255, 200))
    y += 24
    for heading, members in family_rows:
        y = _member_row(sheet, draw, heading, members, y, lambda r: (
            r.decision if r.decision != "rejected" else r.reason, r.label))
    draw.text((6, y + 6), f"LARGEST PATIENT/PAPER GROUPS ({len(group_rows)} shown): one split per row",
              fill=(120, 200, 255))
    y += 24
    for heading, members in group_rows:
        y = _member_row(sheet, draw, heading, members, y, lambda r: (r.split, r.label))
    draw.text((6, y + 6), f"CT VOLUMES ({len(volume_rows)} shown): the slices taken, inferior first",
              fill=(255, 200, 120))
    y += 24
    for heading, members in volume_rows:
        y = _member_row(sheet, draw, heading, members, y, lambda r: (
            "#" + r.slice.split()[1].split("/")[0], r.split or r.reason or r.decision))
    sheet.save(path, optimize=False)


def _family_rows(records: list[Record]) -> list[tuple[str, list[Record]]]:
    families: dict[str, list[Record]] = collections.defaultdict(list)
    for r in records:
        if r.family:
            families[r.family].append(r)
    rows = []
    for keeper, members in sorted(families.items()):
        members.sort(key=lambda r: (r.id != keeper, r.id))
        rows.append((f"family of {keeper}: {len(members)} files, groups "
                     f"{', '.join(sorted({m.group for m in members}))}", members))
    return rows


def _group_rows(records: list[Record]) -> list[tuple[str, list[Record]]]:
    groups: dict[str, list[Record]] = collections.defaultdict(list)
    for r in records:
        if r.decision == "kept":
            groups[r.split_group].append(r)
    largest = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:GROUP_ROWS]
    rows = []
    for name, members in largest:
        splits = sorted({m.split for m in members})
        parts = sorted({m.group for m in members})
        rows.append((f"{name}: {len(members)} kept, split {'+'.join(splits)}"
                     + (f" (joined: {', '.join(parts)})" if len(parts) > 1 else ""),
                     sorted(members, key=lambda r: r.id)))
    return rows


def _volume_rows(records: list[Record]) -> list[tuple[str, list[Record]]]:
    """One row per CT volume that gave slices: which slices (index/count, z, lung area), their
    decisions and split; the whole volume's summary in the heading."""
    volumes: dict[str, list[Record]] = collections.defaultdict(list)
    for r in records:
        if r.volume and r.slice:
            volumes[r.volume].append(r)
    rows = []
    for name, members in sorted(volumes.items())[:VOLUME_ROWS]:
        members.sort(key=lambda r: r.id)
        kept = sum(1 for m in members if m.decision == "kept")
        taken = ", ".join(m.slice.split()[1] for m in members)
        rows.append((f"{name} [{members[0].label}, {members[0].split_group}]: {kept}/{len(members)} "
                     f"kept, split {'+'.join(sorted({m.split for m in members if m.split})) or '-'}; "
                     f"slices {taken}", members))
    return rows


def _member_row(sheet, draw, heading, members, y, caption) -> int:
    draw.text((6, y), heading[:200], fill=(230, 230, 160))
    y += 14
    for k, r in enumerate(members[:GROUP_MEMBERS]):
        x = k * (THUMB + 4)
        _paste(sheet, r.before, x, y)
        top, bottom = caption(r)
        draw.text((x + 2, y + THUMB + 1), f"{top} {bottom}"[:20], fill=(200, 220, 255))
        draw.text((x + 2, y + THUMB + 13), r.file_name[:20], fill=(230, 230, 230))
    return y + THUMB + CAPTION + 2


def _paste(sheet: Image.Image, thumb_path: str, x: int, y: int) -> None:
    if thumb_path and pathlib.Path(thumb_path).is_file():
        with Image.open(thumb_path) as thumb:
            sheet.paste(thumb.convert("RGB"), (x, y))
    else:
        ImageDraw.Draw(sheet).rectangle((x, y, x + THUMB - 1, y + THUMB - 1), outline=(120, 120, 120))


def _wrap(text: str, width: int) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)]


def read_summary(audit_json: str) -> dict:
    """The header and summary of a written audit (without the rows)."""
    document = json.loads(pathlib.Path(audit_json).read_text(encoding="utf-8"))
    document.pop("rows", None)
    return document

