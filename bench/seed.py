"""The seed reproduced to its end (issue 27): `--preset seed28` on the real COVID scans, 500 epochs.

The seed project's first result: a DCGAN at 28x28 trained 500 epochs on its COVID scans only, with
its findings (LeakyReLU, lr 1e-4, no dropout, 11 hidden layers in G and 8 in D: `TrainConfig`'s
defaults). This group runs exactly that through the job's own commands, as a user would:

    covidct prepare --manual-dir <full set> --config 28 --data-dir <bench>/tfds --if-missing
    covidct train --preset seed28 --set labels=covid ... --run <bench>/run      (resumes if cut)
    covidct evaluate --run <bench>/run --checkpoint E --n 500 --out <bench>/e<E>   (each epoch E)

and turns each stated epoch's `report.json` (and the loop's `metrics.jsonl`) into rows: hold-out
SWD and intensity W1 over their real floors, `quality_ratio`, diversity, the memorisation test.
Every step is idempotent (a finished train is "already complete", an existing report is read
back), so a cut bench run continues where it stopped. About 75 min on 2 CPU cores for the full
run; `--quick` trains 2 epochs of a tiny model on the sample (its figures mean nothing).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
from typing import Callable

from bench.rows import Row, row
from job.evaluation.verdict import DIVERSITY_MIN_RATIO

EPOCHS_FULL = (50, 100, 250, 500)
EPOCHS_QUICK = (2,)
EVAL_IMAGES = {True: 64, False: 500}
TARGET_QUALITY_RATIO = 1.1  # issue 27: as close to unseen scans as real scans are
FIGURE_IMAGES = 16

_REPO = pathlib.Path(__file__).resolve().parents[1]


def variant_suffix(sets: tuple[str, ...]) -> str:
    """The folder suffix of a recipe variant: ('lecam_weight=0.3',) -> '-lecam_weight=0.3'."""
    return "".join("-" + re.sub(r"[^A-Za-z0-9_.=]+", "_", s) for s in sets)


def train_args(data_dir: str, run: pathlib.Path, epochs: int, quick: bool,
               synthetic: bool = False, variant: tuple[str, ...] = (), labels: str = "covid") -> list[str]:
    """`covidct train` arguments of the seed's setting on `labels` ("" = every class; checkpoints
    kept at every stated epoch), then the `variant`'s FIELD=VALUE overrides."""
    # lecam_weight=0: the seed's own recipe (the seed28 preset adds LeCam; a variant may too).
    sets = [f"allow_synthetic_data={str(synthetic).lower()}", f"labels={labels}", "lecam_weight=0", "dataset_config=28",
            f"data_dir={data_dir}", f"epochs={epochs}",
            f"checkpoint_every_epochs={1 if quick else 50}", "keep_checkpoints=20"]
    if quick:
        sets += ["g_depth=3", "d_depth=3", "g_filters=8", "d_filters=8", "latent_dim=32",
                 "global_batch_size=16", "metrics_every_epochs=1", "metric_num_images=64",
                 "sample_every_epochs=1"]
    args = ["train", "--preset", "seed28", "--run", str(run)]
    for s in [*sets, *variant]:
        args += ["--set", s]
    return args


def covidct(args: list[str], log: pathlib.Path) -> int:
    """Run `python -m job ARGS` from the repo, appending its output to `log`; its exit code."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(_REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    with log.open("a") as out:
        out.write(f"\n$ covidct {' '.join(args)}\n")
        out.flush()
        return subprocess.run([sys.executable, "-m", "job", *args], cwd=_REPO, env=env,
                              stdout=out, stderr=subprocess.STDOUT).returncode


def must(code: int, what: str, log: pathlib.Path, allowed=(0,)) -> None:
    """Raises RuntimeError naming the step and its log unless `code` is one of `allowed`."""
    if code not in allowed:
        raise RuntimeError(f"{what} failed (exit {code}); see {log}")


def run(manual_dir: str, quick: bool, folder: pathlib.Path, synthetic: bool = False,
        progress: Callable[[str], None] = print, variant: tuple[str, ...] = ()) -> dict:
    """Prepare, train to the last stated epoch, evaluate each stated epoch; the reports by epoch.

    `folder` keeps the dataset, the run and the reports, so a second call continues or re-reads.
    Raises RuntimeError naming the step and the log when a command fails.
    """
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "seed.log"
    data_dir = str(folder / "tfds")
    run_dir = folder / "run"
    epochs = EPOCHS_QUICK if quick else EPOCHS_FULL
    progress(f"seed: prepare 28x28 from {manual_dir} (log: {log})")
    must(covidct(["prepare", "--manual-dir", manual_dir, "--config", "28", "--data-dir",
                    data_dir, "--if-missing"], log), "prepare", log)
    progress(f"seed: train seed28 on the covid scans to epoch {epochs[-1]} in {run_dir}")
    must(covidct(train_args(data_dir, run_dir, epochs[-1], quick, synthetic, variant), log), "train", log)
    reports = {}
    for epoch in epochs:
        out = folder / f"e{epoch}"
        if not (out / "report.json").exists():
            progress(f"seed: evaluate epoch {epoch}")
            # 3 = the report was written and the generator failed its verdict: a figure, not an error.
            must(covidct(["evaluate", "--run", str(run_dir), "--checkpoint", str(epoch), "--n",
                            str(EVAL_IMAGES[quick]), "--out", str(out)], log),
                  f"evaluate epoch {epoch}", log, allowed=(0, 3))
        reports[epoch] = json.loads((out / "report.json").read_text())
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    figure = folder / "final_vs_holdout.png"
    progress(f"seed: the epoch-{epochs[-1]} generator beside real hold-out scans ({figure})")
    final_figure(run_dir, epochs[-1], figure)
    return {"reports": reports, "history": history, "folder": str(folder), "figure": str(figure)}


def final_figure(run_dir: pathlib.Path, epoch: int, path: pathlib.Path, n: int = FIGURE_IMAGES) -> None:
    """Rows of real hold-out scans and of the run's EMA generator at `epoch` (the job's own
    drawing: standing statistics, `job.generate`), each `n` images, as a tagged PNG."""
    from job.generate import generate_images, load_generator
    from job.images import save_png, side_by_side
    from job.training import data

    generator, config, _ = load_generator(str(run_dir), str(epoch))
    holdout = data.load_holdout(config)
    rows = [("real hold-out", holdout[:n]), (f"epoch {epoch}", generate_images(generator, config, n)[:n])]
    save_png(side_by_side(rows), path, synthetic_tags={"run": str(run_dir), "epoch": str(epoch),
                                                        "rows": "real hold-out, generated"})


def _quality_ratio_at(history: list[dict], epoch: int) -> float | None:
    for entry in history:
        if entry.get("epoch") == epoch and entry.get("quality_ratio") is not None:
            return float(entry["quality_ratio"])
    return None


def rows(measured: dict, source_kind: str, quick: bool, variant: tuple[str, ...] = ()) -> list[Row]:
    """Per stated epoch: quality over the floor, diversity, memorisation; and the wander of
    `quality_ratio` over the last 60% of the run (the loop's every-10-epoch figure)."""
    out: list[Row] = []
    head = f"seed28 covid 28x28 ({source_kind} scans{''.join(', ' + v for v in variant)})"
    for epoch, rep in measured["reports"].items():
        q, d, m = rep["quality"], rep["diversity"], rep["memorisation"]
        folder = pathlib.Path(measured["folder"]) / f"e{epoch}"
        out += [
            row(f"{head} epoch {epoch}: SWD vs hold-out", q["swd_generated_vs_holdout"], "SWDx1e3",
                reference=q["swd_holdout_vs_train"], better="lower",
                note=f"reference = real floor; grid: {folder / 'samples.png'}"),
            row(f"{head} epoch {epoch}: intensity W1 vs hold-out", q["intensity_w1_generated_vs_holdout"],
                "W1", reference=q["intensity_w1_holdout_vs_train"], better="lower",
                note="reference = real floor"),
            row(f"{head} epoch {epoch}: quality_ratio (loop)",
                _quality_ratio_at(measured["history"], epoch) or float("nan"), "x floor",
                target=None if quick else TARGET_QUALITY_RATIO, better="lower"),
            row(f"{head} epoch {epoch}: diversity (hold-out coverage vs the real scans')",
                d["diversity_ratio"], "ratio", target=None if quick else DIVERSITY_MIN_RATIO,
                note=f"coverage {d.get('coverage_generated')} vs {d.get('coverage_real')}"),
            row(f"{head} epoch {epoch}: near-copies flagged", m["flagged"], "images",
                reference=m["expected_by_chance"], target=None if quick else 1.0, better="lower",
                note=f"reference = expected by chance; p = {m['p_value']:.3g}; {rep['verdict']}"),
        ]
    last = max(measured["reports"])
    tail = [float(h["quality_ratio"]) for h in measured["history"]
            if h.get("quality_ratio") is not None and h.get("epoch", 0) > 0.4 * last]
    if tail:
        out.append(row(f"{head}: quality_ratio range over epochs {int(0.4 * last)}-{last}",
                       max(tail) - min(tail), "x floor", better="lower",
                       note=f"min {min(tail):.3f}, max {max(tail):.3f} over {len(tail)} measurements; "
                     f"final grid beside real hold-out scans: {measured['figure']}"))
    return out
