"""Seconds to build the covid_ct dataset from N scans, in its own process for its own peak RSS.

    python -m bench.prepare --manual-dir DIR --data-dir DIR [--config 64]   # prints one JSON line

Runs `job.prepare.prepare` (what `covidct prepare` runs) on the scans as they are; `--demo`
builds the synthetic phantoms instead. The dataset issue's target: 750 real scans in < 60 s.
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from job.prepare import prepare

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


if __name__ == "__main__":
    sys.exit(main())
