"""Bench group 'utility' (issue 27): what synthetic scans are worth to a COVID vs non-COVID
classifier, measured as `job.evaluation.utility.experiment` measures it (real only; real +
classical augmentation; real + synthetic at each ratio; 5 seeds; 95% intervals; the gain over
real with its interval), on a prepared dataset's patient/paper-level train and test splits.

Synthetic images come from `synthetic_runs`: one conditional run (its images drawn across the
classes in the training split's proportions) or one run per class (`--set labels=covid` and
`labels=non_covid`), each drawing its share of the images; every image carries the class it was
drawn as. Without runs only the real and classical arms are measured: the classifier's baseline.

`measure` is the group `python -m bench --only utility`: through the job's own commands it
prepares the scans the bench was given (`COVIDCT_FULL_DIR`, else the sample, else the phantoms)
at 28x28, trains one class-conditional seed28 run with LeCam (the recipe that met the quality
target in the seed group) on every training scan, and runs the experiment with its best
checkpoint. Preparing and training are idempotent, so a cut run continues from its last
checkpoint; the classifier arms (minutes) run again.
"""

from __future__ import annotations

import math
import pathlib
from typing import Callable, Sequence

import numpy as np

from bench import seed as seed_group
from bench.rows import Row, row
from job.config import TrainConfig, validate
from job.errors import UserError
from job.evaluation import evaluate, utility
from job.generate import read_config
from job.training import data
from tfds_covidct.covid_ct.sources import LABELS


def _synthetic(runs: Sequence[str], checkpoint: str, total: int, train_covid: np.ndarray,
               shape: tuple, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`total` images (about) from `runs` and their is-covid flags; a one-class run draws its
    class's share of the training split, a conditional run all of them."""
    images, covid = [np.zeros((0, *shape), np.float32)], [np.zeros(0, bool)]
    for uri in runs:
        config = read_config(uri)
        names = config.label_names or LABELS
        share = 1.0 if config.conditional or len(names) > 1 else float(
            np.mean(train_covid == (names[0] == LABELS[0])))
        generated, labels, *_ = evaluate.draw(uri, checkpoint, max(2, math.ceil(total * share)), seed)
        if labels is None:
            raise UserError(f"{uri}: an unconditional run of both classes draws images without a "
                            "class; use a conditional run or one run per class")
        images.append(generated)
        covid.append(np.asarray(labels) == LABELS.index(LABELS[0]))
    return np.concatenate(images), np.concatenate(covid)


def run(data_dir: str, synthetic_runs: Sequence[str] = (), *, dataset_config: str = "28",
        checkpoint: str = "latest", seeds: int = utility.SEEDS,
        ratios: Sequence[float] = utility.RATIOS, steps: int = utility.STEPS,
        synthetic_data: bool = False, seed: int = 0) -> dict:
    """The experiment on covid_ct/`dataset_config` prepared in `data_dir` (`synthetic_data`:
    the demo phantoms are allowed); returns {"result": `utility.experiment`'s dict, "runs",
    "checkpoint", "dataset", "train": count}.

    Raises:
        UserError: a dataset without both classes in both splits, a run without classes.
    """
    config = validate(TrainConfig(dataset_config=dataset_config, data_dir=data_dir,
                                  allow_synthetic_data=synthetic_data))
    (train, train_covid), (test, test_covid) = data.load_split(config, "train"), data.load_split(config, "test")
    if train_covid is None or test_covid is None:
        raise UserError(f"covid_ct/{dataset_config} in {data_dir} has no covid/non_covid labels")
    ratios = tuple(ratios) if synthetic_runs else ()
    total = math.ceil(max(ratios, default=0) * len(train))
    synthetic, synthetic_covid = _synthetic(synthetic_runs, checkpoint, total, train_covid,
                                            train.shape[1:], seed)
    result = utility.experiment(train, train_covid, test, test_covid, synthetic, synthetic_covid,
                                seeds=seeds, ratios=ratios, steps=steps)
    return {"result": result, "runs": list(synthetic_runs), "checkpoint": checkpoint,
            "dataset": f"covid_ct/{dataset_config}", "train": len(train)}


# The generator: the seed's 28x28 recipe, class-conditional, with LeCam at the weight that met
# the quality target (README, "LeCam against the seed's recipe"). 250 epochs of the 662 training
# scans = 166 kimg, about the seed run's 500 epochs of its 309 COVID scans (144 kimg).
RECIPE = ("conditional=true", "lecam_weight=0.3")
EPOCHS = {True: 2, False: 250}
QUICK = {"seeds": 2, "steps": 20, "ratios": (1.0,)}  # proves the path; its figures mean nothing


def train_args(data_dir: str, run: pathlib.Path, quick: bool, synthetic: bool = False) -> list[str]:
    """`covidct train` arguments of the generator: the seed's setting on every class, then `RECIPE`."""
    return seed_group.train_args(data_dir, run, EPOCHS[quick], quick, synthetic, RECIPE, labels="")


def measure(manual_dir: str, quick: bool, folder: pathlib.Path, synthetic: bool = False,
            progress: Callable[[str], None] = print) -> dict:
    """Prepare `manual_dir` at 28x28 in `folder`, train the conditional generator (`RECIPE`,
    `EPOCHS`), then `run` with its best checkpoint; `run`'s dict plus "recipe" and "epochs".

    Raises:
        RuntimeError: a command failed (the message names it and its log).
        UserError: as `run`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    log, data_dir, run_dir = folder / "utility.log", str(folder / "tfds"), folder / "run"
    progress(f"utility: prepare 28x28 from {manual_dir} (log: {log})")
    seed_group.must(seed_group.covidct(["prepare", "--manual-dir", manual_dir, "--config", "28",
                                        "--data-dir", data_dir, "--if-missing"], log), "prepare", log)
    progress(f"utility: train a conditional seed28 run ({', '.join(RECIPE)}) to epoch "
             f"{EPOCHS[quick]} in {run_dir}")
    seed_group.must(seed_group.covidct(train_args(data_dir, run_dir, quick, synthetic), log), "train", log)
    progress("utility: the classifier's arms (real, classical, synthetic), every seed")
    settings = QUICK if quick else {}
    measured = run(data_dir, [str(run_dir)], checkpoint="best", synthetic_data=synthetic, **settings)
    return {**measured, "recipe": list(RECIPE), "epochs": EPOCHS[quick]}


def rows(measured: dict, source_kind: str = "") -> list[Row]:
    """Per arm its AUC and accuracy (interval in the note), per synthetic arm its AUC gain over
    real (reference 0: "gain" only when the interval's low end is above it). `source_kind` (full,
    sample, demo) names the scans in each row."""
    result = measured["result"]
    st = result["settings"]
    scans = f"{source_kind} scans, " if source_kind else ""
    head = f"utility {measured['dataset']} ({scans}{st['seeds']} seeds, {st['steps']} batches)"
    out = []
    for name, arm in result["arms"].items():
        for key, unit in (("auc", "AUC"), ("accuracy", "accuracy")):
            v = arm[key]
            out.append(row(f"{head}: {name} {unit}", v["mean"], unit,
                           note=f"95% [{v['low']:.3f}, {v['high']:.3f}], {arm['images']} images"))
    for name, gain in result["gain"].items():
        v = gain["auc"]
        out.append(row(f"{head}: {name} AUC gain over real", v["mean"], "AUC",
                       note=f"95% [{v['low']:.3f}, {v['high']:.3f}]: {utility.verdict(gain)}"))
    return out
