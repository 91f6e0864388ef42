"""manual_dir -> the plan of a build: every input's audit record, the kept scans and their split.

Files are decoded and cleaned in a process pool (streamed: each worker writes its cleaned image to
a spool folder and returns a small record), then de-duplicated across sources, then split.

The split is held out by group: every scan has a group key from its source's metadata (patient,
paper, series); groups that share a near-duplicate family are joined (union-find), and the joined
group's name (the smallest key in it) alone decides its split: `test` when the first 8 hex digits
of sha256(name) mod 100 < TEST_PERCENT. So a rebuild never moves a scan, adding scans never moves
an existing group (unless a new scan joins two groups), and no patient, paper or copy of a scan is
on both sides.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import multiprocessing
import os
from collections.abc import Iterator

import numpy as np

from tfds_covidct.covid_ct import curation as curation_lib
from tfds_covidct.covid_ct import dedupe, sources, volumes
from tfds_covidct.covid_ct.process import Record, process_any
from tfds_covidct.covid_ct.disjoint import MinRootSets

TEST_PERCENT = 10
# Below this many files the pool costs more (worker start-up imports numpy/scipy) than it saves.
POOL_MIN_FILES = 24
VOLUME_WEIGHT = 24  # a volume costs about as much as this many image files: one is worth a pool

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Plan:
    records: list[Record]
    found: list[sources.Found]

    def kept(self, split: str) -> Iterator[Record]:
        """The kept records of `split`, in a stable order (by sha256)."""
        chosen = [r for r in self.records if r.decision == "kept" and r.split == split]
        return iter(sorted(chosen, key=lambda r: r.sha256))


def split_of(sha256: str) -> str:
    """'test' for about TEST_PERCENT % of hex digests (sha256 of a group's name)."""
    return "test" if int(sha256[:8], 16) % 100 < TEST_PERCENT else "train"


def split_of_group(group: str) -> str:
    """The split of a group key: a function of the key alone (stable across builds and additions)."""
    return split_of(hashlib.sha256(group.encode("utf-8")).hexdigest())


def plan(manual_dir: str | None, size: tuple[int, int], spool: str, workers: int | None = None,
         found: list[sources.Found] | None = None,
         logger: logging.Logger | logging.LoggerAdapter = log, framing: str = "body",
         volume_options: volumes.Options | None = None) -> Plan:
    """Finds, reads, cleans and de-duplicates every input of `manual_dir` for images of `size`.

    `found` is the result of `sources.discover` when the caller already has it. CT volumes give
    one record per chosen slice (`volume_options`, default `volumes.Options()`).
    Raises DatasetError for whole-build problems (no manual_dir, nothing recognisable, a bad
    curation file); every problem with a single file is a record with decision 'rejected'.
    """
    if found is None:
        found = sources.discover(manual_dir)
        for f in found:
            logger.info("%s", f.describe())
    rules = curation_lib.load(manual_dir)
    items = [f for src in found for f in src.files]
    logger.info("%d input files from %d source(s); %d curation rule(s)", len(items), len(found), len(rules))
    n_volumes = sum(1 for f in items if f.volume)
    if n_volumes:
        logger.info("%d of them CT volumes: %s", n_volumes, (volume_options or volumes.Options()).describe())
    records = []
    for i, batch in enumerate(_process_all(items, size, rules, spool, workers, framing,
                                           volume_options), start=1):
        records.extend(batch)
        if i % 200 == 0 or (items[i - 1].volume and i % 10 == 0):
            logger.info("processed %d/%d inputs", i, len(items))
    resolve(records)
    return Plan(records, found)


def _process_all(items, size, rules, spool, workers, framing, volume_options
                 ) -> Iterator[list[Record]]:
    """The records of each input, in input order (a volume gives one per chosen slice)."""
    workers = workers if workers is not None else len(os.sched_getaffinity(0))
    ids = [f.display for f in items]
    weight = sum(VOLUME_WEIGHT if f.volume else 1 for f in items)
    if workers <= 1 or weight < POOL_MIN_FILES or len(items) < 2:
        for item, record_id in zip(items, ids):
            yield process_any(item, record_id, size, rules, spool, framing, volume_options)
        return
    # spawn, not fork: the parent has TensorFlow's threads running.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        n = len(items)
        # Volumes are slow and uneven: hand them out one at a time.
        chunk = 1 if any(f.volume for f in items) else 4
        yield from pool.map(process_any, items, ids, [size] * n, [rules] * n, [spool] * n,
                            [framing] * n, [volume_options] * n, chunksize=chunk)


def _signature(record: Record) -> np.ndarray:
    side = dedupe.THUMB_SIDE
    return np.frombuffer(bytes.fromhex(record.signature), np.uint8).reshape(side, side)


def resolve(records: list[Record]) -> None:
    """Decides duplicates, families and splits in place: after it every record is kept,
    duplicate or rejected, and every kept one has a split drawn for its (joined) group."""
    usable = [r for r in records if not r.decision]
    candidates = [dedupe.Candidate(r.id, r.sha256, _signature(r), r.width * r.height) for r in usable]
    by_id = {r.id: r for r in usable}
    groups: dict[str, list[tuple[Record, dedupe.Duplicate]]] = {}
    for dup in dedupe.find_duplicates(candidates):
        groups.setdefault(dup.of, []).append((by_id[dup.id], dup))
    for keeper_id, copies in groups.items():
        keeper = by_id[keeper_id]
        keeper.family = keeper.id
        for r, _ in copies:
            r.family = keeper.id
        labels = {keeper.label} | {r.label for r, _ in copies}
        if len(labels) > 1:
            for r in [keeper] + [r for r, _ in copies]:
                r.reject("duplicate_label_conflict",
                         f"the same scan is labelled {' and '.join(sorted(labels))} "
                         f"({keeper.id}, {', '.join(c.id for c, _ in copies)})")
            continue
        for r, dup in copies:
            r.decision, r.duplicate_of = "duplicate", dup.of
            r.reason = f"{dup.kind}_duplicate"
            r.detail = ("same bytes" if dup.kind == "exact" else
                        f"detail correlation {dup.correlation:.3f} with {dup.via} after aligning "
                        f"crops {dup.crop}")
    _assign_splits(records)


def _assign_splits(records: list[Record]) -> None:
    """Joins the groups of every family (union-find over group keys) and draws one split per
    joined group; every record that has a group gets its split_group, the kept ones a split."""
    groups = MinRootSets()  # the smallest key names the joined group
    root, join = groups.root, groups.join

    for r in records:
        r.group = r.group or f"file:{r.file_name}"
        root(r.group)
    family_groups: dict[str, str] = {}
    for r in records:
        if r.family:
            if r.family in family_groups:
                join(family_groups[r.family], r.group)
            else:
                family_groups[r.family] = r.group
    for r in records:
        r.split_group = root(r.group)
        if r.decision in ("", "kept"):
            r.decision, r.split = "kept", split_of_group(r.split_group)
