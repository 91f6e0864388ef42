"""Seconds to build the covid_ct dataset from N scans, in its own process for its own peak RSS.

    python -m bench.prepare --manual-dir DIR --data-dir DIR [--config 64]   # prints one JSON line
    python -m bench.prepare --volumes 8 --data-dir DIR                     # CT volumes: slices/s

Runs `job.prepare.prepare` (what `covidct prepare` runs) on the scans as they are; `--demo`
builds the synthetic phantoms instead. The dataset issue's target: 750 real scans in < 60 s.
`--volumes N` writes N phantom CT volumes (half DICOM series, half NIfTI; bench.sources) and
reports the "slices per second from volumes" row: axial slices read per second by the whole build
(worker pool, cleaning, TFDS writing), and by the reader alone in this process (one core).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manual-dir")
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--config", default="64")
    parser.add_argument("--volumes", type=int, default=0,
                        help="build from this many phantom CT volumes instead (slices per second)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from job.prepare import prepare

    if args.volumes:
        return _volumes(args, prepare)

    t0 = time.perf_counter()
    (summary,) = prepare(args.config, args.data_dir, manual_dir=args.manual_dir, demo=args.demo)
    seconds = time.perf_counter() - t0
    audit = json.loads(open(summary.audit_json, encoding="utf-8").read())["summary"]
    print(json.dumps({
        "seconds": seconds,
        "found": summary.found,
        "kept": summary.kept,
        "splits": summary.splits,
        "seconds_per_750_scans": seconds * 750 / max(1, summary.found),
        # Dedupe and split figures of the build (issue 15): near-duplicate families, files in them,
        # patient/paper groups, how many went to test, and groups with scans on both sides (0).
        "duplicates": summary.duplicates,
        "families": audit.get("families"),
        "family_members": audit.get("family_members"),
        "label_conflicts": summary.rejected_by_reason.get("duplicate_label_conflict", 0),
        "groups": audit.get("groups"),
        "test_groups": audit.get("test_groups"),
        "groups_in_both_splits": audit.get("groups_in_both_splits"),
        "synthetic": summary.synthetic,
        # The builder decodes in worker processes: count their peak too (the largest child).
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }))
    return 0


def _volumes(args, prepare) -> int:
    """The "slices per second from volumes" row (issue 16)."""
    import pathlib
    import tempfile

    from bench import sources
    from tfds_covidct.covid_ct import volumes

    with tempfile.TemporaryDirectory(prefix="bench_volumes_") as scratch:
        t0 = time.perf_counter()
        manual_dir, slices = sources.volume_manual_dir(pathlib.Path(scratch) / "manual", args.volumes)
        write_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        (summary,) = prepare(args.config, args.data_dir, manual_dir=manual_dir)
        seconds = time.perf_counter() - t0
        # The reader alone, one volume of each format, in this process (no pool, no cleaning).
        found = sorted(pathlib.Path(manual_dir).glob("*/*"))
        inputs = [next(p for p in found if p.is_dir()), next(p for p in found if p.is_file())]
        reader = {}
        for path in inputs:
            members = tuple(sorted(m.name for m in path.iterdir())) if path.is_dir() else ()
            t0 = time.perf_counter()
            volumes.read(path, members)
            reader["dicom" if members else "nifti_gz"] = sources.VOLUME_DEPTH / (time.perf_counter() - t0)
    print(json.dumps({
        "volumes": args.volumes,
        "volume_shape": [sources.VOLUME_DEPTH, sources.VOLUME_SIDE, sources.VOLUME_SIDE],
        "slices_in": slices,
        "seconds": seconds,
        "slices_per_second": slices / seconds,
        "slices_kept": summary.volumes.get("slices_kept"),
        "volumes_used": summary.volumes.get("used"),
        "reader_slices_per_second_one_core": reader,
        "write_phantoms_seconds": write_seconds,
        "workers": len(os.sched_getaffinity(0)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
