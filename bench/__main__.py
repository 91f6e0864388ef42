"""`python -m bench [--quick] [--json FILE] [--check] [--only GROUP ...]`: the benchmark table.

    python -m bench --quick --json /tmp/bench.json   # < 3 min on 2 CPU cores: proves it runs
    python -m bench --json bench.json --check        # the full run for the README (~45 min on 2 cores)
    python -m bench --only seed336x504               # the long run's step, checkpoint and projection
    python -m bench --only seed --set lecam_weight=0.3   # a variant of the seed's recipe, its own rows

Prints a markdown table (and notes), writes the rows as JSON and, beside it, the quality grid
(bench_quality.png) and every timing sample behind the medians (bench_raw.json).
Without --check a missed target is reported as missed; with --check it also exits 1. --quick rows
carry no target and no verdict (their figures are not meaningful), so --check judges full runs only.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from job.training.devices import configure_cpu_replicas  # noqa: E402

# Logical devices are fixed when TensorFlow initialises: split the CPU before anything runs.
configure_cpu_replicas(2)

from bench import rows as rows_mod  # noqa: E402
from bench.run import GROUPS, machine, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, short budgets (CI)")
    parser.add_argument("--json", metavar="FILE", help="write the rows here (and the PNG beside it)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a target is missed (full runs only: --quick has no verdicts)")
    parser.add_argument("--only", nargs="+", choices=GROUPS, metavar="NAME",
                        help=f"run only these groups: {', '.join(GROUPS)}")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="the seed group: train a variant of the seed's recipe (its own folder "
                             "and rows), e.g. --set lecam_weight=0.3")
    args = parser.parse_args(argv)
    out_dir = (pathlib.Path(args.json).resolve().parent if args.json
               else pathlib.Path(tempfile.mkdtemp(prefix="covidct-bench-out-")))
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = run(args.quick, args.only, out_dir, progress=lambda msg: print(
        f"[bench {time.perf_counter() - start:6.1f} s] {msg}", file=sys.stderr, flush=True),
        seed_sets=tuple(args.set))
    print(rows_mod.table(results))
    if notes := rows_mod.notes(results):
        print("\nNotes:\n" + notes)
    print(f"\nMachine: {machine()}")
    if args.json:
        rows_mod.write_json(results, args.json)
        print(f"wrote {args.json}")
    if args.check and args.quick:
        print("--check judges full runs only: --quick rows carry no verdict", file=sys.stderr)
    missed = rows_mod.missed(results)
    for r in missed:
        print(f"MISSED: {r.name}: {r.ratio if r.ratio is not None else r.value:.3g} "
              f"(target {'>=' if r.better == 'higher' else '<='} {r.target})", file=sys.stderr)
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
