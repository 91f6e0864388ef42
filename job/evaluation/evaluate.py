"""`covidct evaluate`: is a checkpoint's output like the scans, varied, and not a copy of any?

    covidct evaluate --run runs/demo --checkpoint best --n 1000 --out reports/demo

About a minute on 2 CPU cores for 1000 images at 64x64 (memorisation ~2 s, SWD ~10 s); class
fidelity trains a tiny CNN for a few seconds more; `--utility` trains three.

`evaluate` is the I/O edge: it loads the run's config, EMA generator and real splits
(`train` = what the generator saw, `test` = the real hold-out), then hands numpy arrays to
`evaluate_arrays`, the pure core that tests drive with constructed cases, and writes the report
(`job.evaluation.report`) to a folder or gs:// through `job.storage`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from job import storage
from job.errors import UserError
from job.evaluation import classifier, memorisation, quality
from job.metrics import inception
from job.training import data

log = logging.getLogger("covidct")

def evaluate_arrays(
    train: np.ndarray,
    holdout: np.ndarray,
    generated: np.ndarray,
    *,
    train_covid: np.ndarray | None = None,
    holdout_covid: np.ndarray | None = None,
    seed: int = 0,
    extractor: Callable[[Any], np.ndarray] | None = None,
    with_utility: bool = False,
) -> tuple[dict[str, Any], memorisation.Memorisation]:
    """Every figure of the report from arrays in [-1, 1] (N, H, W, 1); (results, memorisation).

    `*_covid` are booleans (True = covid); class fidelity runs when both splits hold both classes.
    """
    shapes = {np.shape(x)[1:] for x in (train, holdout, generated)}
    if len(shapes) > 1:
        raise UserError(f"train, hold-out and generated images differ in shape: {sorted(shapes)}")
    memo = memorisation.check(generated, train, holdout)
    results: dict[str, Any] = {
        "counts": {"train": len(train), "holdout": len(holdout), "generated": len(generated)},
        "quality": quality.quality(train, holdout, generated, seed=seed, extractor=extractor),
        "diversity": quality.diversity(quality.subsample(train, min(len(train), len(generated)),
                                                         np.random.default_rng(seed)), generated),
        "memorisation": memo.summary(),
        "class_fidelity": None,
        "utility": None,
    }
    if classifier.has_both_classes(train_covid, holdout_covid):
        fidelity, model = classifier.class_fidelity(train, train_covid, holdout, holdout_covid, generated, seed=seed)
        results["class_fidelity"] = fidelity
        if with_utility:
            pseudo = classifier.covid_probability(model, generated) > 0.5
            results["utility"] = classifier.utility(train, train_covid, holdout, holdout_covid, generated,
                                         pseudo, seed=seed)
    elif with_utility:
        raise UserError("--utility needs a dataset whose train and test splits hold both covid "
                        "and non_covid scans")
    return results, memo



def evaluate(
    run_uri: str,
    out: str,
    checkpoint: str = "latest",
    n: int = 1000,
    seed: int = 0,
    inception_weights: str = "",
    utility: bool = False,
) -> dict[str, Any]:
    """Generate `n` images from `run_uri` at `checkpoint`, evaluate them, write the report to
    `out` (folder or gs://); returns the report's JSON content."""
    from job.evaluation import report
    from job.generate import generate_images, load_generator

    if n < 2:
        raise UserError(f"--n must be at least 2, got {n}")
    extractor = inception.extractor(inception_weights)  # fail on a bad file before any work
    generator, config, epoch = load_generator(run_uri, checkpoint)
    train, train_covid = data.load_split(config, "train")
    holdout, holdout_covid = data.load_split(config, "test")
    generated = generate_images(generator, config, n, seed)
    log.info(f"evaluating {n} images of {run_uri} (epoch {epoch}) against {len(train)} train and "
             f"{len(holdout)} hold-out scans")
    results, memo = evaluate_arrays(
        train, holdout, generated, train_covid=train_covid, holdout_covid=holdout_covid,
        seed=seed, extractor=extractor, with_utility=utility)
    results["run"] = {"uri": run_uri, "checkpoint": checkpoint, "epoch": epoch, "seed": seed,
                      "dataset": f"covid_ct/{config.dataset_config}", "data_dir": config.data_dir,
                      "inception_weights": inception_weights}
    with storage.staged_output(out) as folder:
        doc = report.write(folder, results, memo, train=train, generated=generated)
    log.info(doc["verdict"])
    return doc
