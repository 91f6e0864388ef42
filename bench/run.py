"""The benchmark run: measure every group, turn the measurements into rows (`bench.step_rows`,
`bench.data_rows`, `bench.seed`, `bench.utility`, `bench.workers`).

Step throughput (with the device's peak timed in the same rounds) runs one process per setting
(`bench.throughput`) and prepare one process (`bench.prepare`), so each reports its own peak RSS;
the input pipeline and the quality run happen in this process. Every figure the rows hold comes from this one run.

The `seed336x504` group prices the long run: its step against the tutorial-style reference at the
same size, FLOP/s against the peak measured in the same rounds, peak memory, a checkpoint's bytes
and save time, and from those the whole 2250-epoch run on this machine (measured) and on 1 and 8
GPUs (an estimate, `bench.projection`, with its arithmetic in the row's note).

The `workers` group prices a run of several workers (`bench.workers`): 2 worker processes of 1
CPU replica against 1 process of 2 on this machine, and the all-reduce projected to N GPU nodes.

`--quick` figures are not meaningful (tiny models, short budgets), so its rows carry no target
and no verdict.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
from typing import Callable

from bench import sources
from bench.data_rows import (VOLUMES, intensity_rows, pipeline_rows, prepare_rows, quality_rows,
                             volume_rows)
from bench.rows import Row, row, without_verdict
from bench.step_rows import (LABELS, checkpoint_rows, hardware_rows, long_run_rows, memory_rows,
                             scaling_rows, step_rows)
from bench.throughput import FEATURE_SETTING, LARGE_SETTING, QUICK_SETTINGS, SETTINGS, setting_config
from job.config import override

GROUPS = ("step", "hardware", "scaling", "memory", "pipeline", "prepare", "quality", "intensity",
          "checkpoint", LARGE_SETTING, "seed", "utility", "workers")
# Not in a --quick run unless named: two worker processes over loopback take minutes whatever
# the budget, and their ratio means nothing at two epochs.
NOT_QUICK = ("workers",)
CHECKPOINT_PRESETS = ("seed28", "default", "seed336x504")  # 28x28, 64x64, 336x504
QUALITY_BUDGET_SECONDS = {True: 3.0, False: 300.0}  # early SWD moves fast: 5 min steadies it
INTENSITY_BUDGET_SECONDS = {True: 3.0, False: 600.0}  # issue 19's budget: 10 minutes
ROUNDS = 5  # timed rounds after warm-up; the figure is their median
QUICK_ROUNDS = 2  # --quick proves the timing runs; its figures mean nothing


_REPO = pathlib.Path(__file__).resolve().parents[1]


def _worker(module: str, args: list[str]) -> dict:
    """Run `python -m module args` from the repo; its last stdout line is a JSON result."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(_REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=_REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{module} {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _settings(quick: bool) -> list[str]:
    """The settings the step, hardware and memory groups measure (the long run is its own group)."""
    return [s for s in SETTINGS if s != LARGE_SETTING and (not quick or s in QUICK_SETTINGS)]


def run(quick: bool, only: list[str] | None, out_dir: pathlib.Path,
        progress: Callable[[str], None] = print, seed_sets: tuple[str, ...] = ()) -> list[Row]:
    """Measure the selected groups (all by default); returns the rows in a fixed order.
    `seed_sets` (FIELD=VALUE) make the seed group train a variant of the seed's recipe."""
    groups = set(only or [g for g in GROUPS if not (quick and g in NOT_QUICK)])
    rows: list[Row] = []
    need_steps = groups & {"step", "hardware", "memory"}
    settings = _settings(quick) if need_steps else []
    if groups & {"scaling", "pipeline"} and FEATURE_SETTING not in settings:
        settings.append(FEATURE_SETTING)

    results = {}
    for setting in settings:
        progress(f"step throughput {LABELS[setting]} (own process)")
        args = ["--setting", setting, "--rounds", str(QUICK_ROUNDS if quick else ROUNDS)] + (
            ["--quick"] if quick else [])
        results[setting] = _worker("bench.throughput", args)
        # Every sample behind the medians, for anyone who doubts a figure.
        (out_dir / "bench_raw.json").write_text(json.dumps(results, indent=1) + "\n")
        if "step" in groups:
            rows += step_rows(setting, results[setting])
        if "hardware" in groups:
            rows += hardware_rows(setting, results[setting])
        if "memory" in groups:
            rows += memory_rows(setting, results[setting])
    if "scaling" in groups:
        rows += scaling_rows(results[FEATURE_SETTING])
    if "checkpoint" in groups:
        for preset in CHECKPOINT_PRESETS[:1] if quick else CHECKPOINT_PRESETS:
            rows += checkpoint_rows(_worker("bench.checkpoints", ["--preset", preset]))
    if LARGE_SETTING in groups:
        progress(f"the long run, {LABELS[LARGE_SETTING]}: steps, peak, checkpoint (own process)")
        args = ["--setting", LARGE_SETTING, "--rounds", str(QUICK_ROUNDS if quick else ROUNDS),
                "--checkpoint"] + (["--quick"] if quick else [])
        results[LARGE_SETTING] = _worker("bench.throughput", args)
        (out_dir / "bench_raw.json").write_text(json.dumps(results, indent=1) + "\n")
        rows += long_run_rows(results[LARGE_SETTING], setting_config(LARGE_SETTING, quick))

    if groups & {"pipeline", "prepare", "quality"}:
        with tempfile.TemporaryDirectory(prefix="covidct-bench-") as scratch:
            rows += _data_rows(groups, quick, pathlib.Path(scratch), out_dir, results, progress)
    if "intensity" in groups:
        with tempfile.TemporaryDirectory(prefix="covidct-bench-") as scratch:
            rows += _intensity_rows(quick, pathlib.Path(scratch), out_dir, progress)
    if "seed" in groups:
        rows += _seed_rows(quick, out_dir, progress, seed_sets)
    if "utility" in groups:
        rows += _utility_rows(quick, out_dir, progress)
    if "workers" in groups:
        from bench import workers

        progress("workers: 1 worker x 2 CPU replicas vs 2 workers x 1 over loopback (own processes)")
        with tempfile.TemporaryDirectory(prefix="covidct-bench-workers-") as scratch:
            rows += workers.rows(*workers.measure(2 if quick else workers.EPOCHS, pathlib.Path(scratch)))
    if "memory" in groups:
        rows.append(row("memory bench process (peaks, pipeline, quality): peak RSS",
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB",
                        better="lower"))
    return [without_verdict(r) for r in rows] if quick else rows


def _data_rows(groups, quick, scratch, out_dir, results, progress) -> list[Row]:
    """Prepare, pipeline and quality rows: they share one dataset built in `scratch`."""
    from bench import pipeline, quality
    from job.images import save_png, side_by_side

    rows: list[Row] = []
    source = sources.pick(quick, scratch)
    data_dir = str(scratch / "tfds")
    progress(f"prepare 64x64 from the {source.kind} scans (own process)")
    prepared = _worker("bench.prepare", ["--data-dir", data_dir, "--config", "64"] + (
        ["--manual-dir", source.manual_dir] if source.real else ["--demo"]))
    if "prepare" in groups:
        rows += prepare_rows(prepared, source)
        if not quick:  # a minute of phantom volumes: the full run only
            progress("prepare 64x64 from phantom CT volumes (own process)")
            rows += volume_rows(_worker("bench.prepare", [
                "--data-dir", str(scratch / "tfds-volumes"), "--config", "64",
                "--volumes", str(VOLUMES)]))
    if "pipeline" in groups:
        progress("input pipeline")
        # The step's setting on the prepared data (phantoms when no real scans are named).
        config = override(setting_config(FEATURE_SETTING, quick),
                          dict(data_dir=data_dir, allow_synthetic_data=not source.real))
        measured = {"job": pipeline.job_pipeline(config),
                    "pillow": pipeline.pillow_epoch(source.manual_dir, config)}
        rows += pipeline_rows(measured, results[FEATURE_SETTING])
    if "quality" in groups:
        budget = QUALITY_BUDGET_SECONDS[quick]
        progress(f"quality at fixed compute ({budget:.0f} s each)")
        measured = quality.run(data_dir, budget)
        png = out_dir / "bench_quality.png"
        save_png(side_by_side(measured["grid_rows"]), png,
                 synthetic_tags={"run": "bench quality", "source": source.kind,
                                 "budget_seconds": budget})
        rows += quality_rows(measured, source, budget, str(png))
    return rows


def _intensity_rows(quick, scratch, out_dir, progress) -> list[Row]:
    from bench import intensity
    from job.images import save_png, side_by_side

    source = sources.pick(quick, scratch)
    data_dir = str(scratch / "tfds")
    progress(f"prepare {intensity.DATASET_CONFIG} from the {source.kind} scans (own process)")
    _worker("bench.prepare", ["--data-dir", data_dir, "--config", intensity.DATASET_CONFIG] + (
        ["--manual-dir", source.manual_dir] if source.real else ["--demo"]))
    budget = INTENSITY_BUDGET_SECONDS[quick]
    progress(f"grey levels at fixed compute: seed28 on the covid lung crops ({budget:.0f} s)")
    measured = intensity.run(data_dir, budget, synthetic=not source.real)
    png = out_dir / "bench_intensity.png"
    save_png(side_by_side(measured["grid_rows"], label_width=200), png,
             synthetic_tags={"run": "bench intensity", "source": source.kind, "budget_seconds": budget})
    return intensity_rows(measured, source, budget, str(png))


def _seed_rows(quick, out_dir, progress, sets: tuple[str, ...] = ()) -> list[Row]:
    """The seed's 500-epoch run (`bench.seed`), kept beside the JSON so a cut run continues;
    a variant (`sets`) in a folder of its own."""
    from bench import seed

    folder = out_dir / (("seed-quick" if quick else "seed") + seed.variant_suffix(sets))
    source = sources.pick(quick, folder)
    measured = seed.run(source.manual_dir, quick, folder, not source.real, progress, sets)
    return seed.rows(measured, source.kind, quick, sets)


def _utility_rows(quick, out_dir, progress) -> list[Row]:
    """The classifier experiment with a conditional generator (`bench.utility`), kept beside the
    JSON so a cut run continues."""
    from bench import utility

    folder = out_dir / ("utility-quick" if quick else "utility")
    source = sources.pick(quick, folder)
    return utility.rows(utility.measure(source.manual_dir, quick, folder, not source.real, progress),
                        source.kind)


def machine() -> str:
    """One line naming the machine: CPU model, cores, GPUs."""
    import tensorflow as tf

    model = "unknown CPU"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = tf.config.list_physical_devices("GPU")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} cores, {len(gpus)} GPU(s), TensorFlow {tf.__version__}, "
            f"load average at the end {load:.2f}, {time.strftime('%Y-%m-%d %H:%M')}")
