"""`covidct evaluate`: is a checkpoint's output like the scans, varied, and not a copy of any?

    covidct evaluate --run runs/demo --checkpoint best --n 1000 --out reports/demo
    covidct evaluate --images DIR --data-dir data/tfds --config 64 --out reports/other

The second form checks any folder of images (another generator's, say) against a prepared
dataset. Both end with one VERDICT line (quality against the real floor, diversity, memorisation,
and the classes when the images have classes) and exit with `errors.VERDICT_FAIL_EXIT_CODE` when
any part fails. A conditional run's images, or a folder whose every PNG carries a `label` tag,
are also evaluated class by class (`job.evaluation.by_class`).

About a minute on 2 CPU cores for 1000 images at 64x64 (memorisation ~2 s, SWD ~10 s); class
fidelity trains a tiny CNN for a few seconds more; `--utility` runs the classifier experiment of
`job.evaluation.utility` (4 arms x 5 seeds: minutes).

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
from job.config import TrainConfig, validate
from job.errors import ConfigError, UsageError, UserError
from job.evaluation import by_class, classifier, memorisation, quality, utility
from job.metrics import inception
from job.training import data
from tfds_covidct.covid_ct.sources import LABELS

log = logging.getLogger("covidct")

def of_classes(is_covid: np.ndarray | None, classes: tuple[str, ...]) -> np.ndarray | slice:
    """An index selecting the scans of `classes` from a split whose (N,) is-covid flags are
    `is_covid`; every scan (a full slice) when `classes` is empty or names every class.

    Raises:
        UserError: a class selection on a dataset without covid/non_covid labels.
    """
    if not by_class.selection(classes):
        return slice(None)
    if is_covid is None:
        raise UserError(f"the generator learnt from {list(classes)} only, but the dataset's scans "
                        "carry no covid/non_covid labels to compare it with")
    return np.isin(by_class.names_of(is_covid), classes)


def evaluate_arrays(
    train: np.ndarray,
    holdout: np.ndarray,
    generated: np.ndarray,
    *,
    train_covid: np.ndarray | None = None,
    holdout_covid: np.ndarray | None = None,
    generated_labels: np.ndarray | None = None,
    no_labels_note: str = "the generated images carry no class",
    trained_on: tuple[str, ...] = (),
    seed: int = 0,
    extractor: Callable[[Any], np.ndarray] | None = None,
    with_utility: bool = False,
    utility_options: dict | None = None,
) -> tuple[dict[str, Any], memorisation.Memorisation]:
    """Every figure of the report from arrays in [-1, 1] (N, H, W, 1); (results, memorisation).

    `*_covid` are (N,) booleans (True = covid); class fidelity runs when both splits hold both
    classes. `generated_labels` are (N,) int class indices into LABELS (a conditional generator's
    classes): with them and the real labels each class is evaluated on its own (`by_class`);
    without them `no_labels_note` says why in the report. `trained_on` names the classes the
    generator learnt from (a run's `labels`; empty: all): the whole-set quality, diversity and
    memorisation compare it with those classes' real scans only, while the class-fidelity probe
    still learns from both.

    Raises:
        UserError: shapes that differ, labels that do not fit the generated images, `with_utility`
            without both classes in both real splits (`utility_options` go to
            `utility.experiment`: seeds, ratios, steps).
    """
    shapes = {np.shape(x)[1:] for x in (train, holdout, generated)}
    if len(shapes) > 1:
        raise UserError(f"train, hold-out and generated images differ in shape: {sorted(shapes)}")
    if generated_labels is not None and (np.shape(generated_labels) != (len(generated),) or not
                                         np.isin(generated_labels, range(len(LABELS))).all()):
        raise UserError(f"generated_labels must be {len(generated)} class indices into "
                        f"{list(LABELS)}, got shape {np.shape(generated_labels)}")
    ref_train = train[of_classes(train_covid, trained_on)]
    ref_holdout = holdout[of_classes(holdout_covid, trained_on)]
    memo = memorisation.check(generated, ref_train, ref_holdout)
    figures, diversity = quality.measure(ref_train, ref_holdout, generated, seed=seed,
                                         extractor=extractor)
    results: dict[str, Any] = {
        "counts": {"train": len(ref_train), "holdout": len(ref_holdout), "generated": len(generated)},
        "trained_on": list(trained_on or LABELS),
        "quality": figures,
        "diversity": diversity,
        "memorisation": memo.summary(),
        "class_fidelity": None,
        "utility": None,
        "by_class": by_class.skipped(no_labels_note),
    }
    probabilities = {}
    if classifier.has_both_classes(train_covid, holdout_covid):
        fidelity, probabilities = classifier.class_fidelity(train, train_covid, holdout, holdout_covid,
                                                            generated, seed=seed)
        results["class_fidelity"] = fidelity
        if with_utility:
            # The classes the images were drawn (or tagged) as; the real classifier's guess only
            # for images that have none.
            given = generated_labels is not None
            synthetic_covid = (np.asarray(generated_labels) == LABELS.index(by_class.COVID) if given
                               else probabilities["generated_p"] > 0.5)
            results["utility"] = utility.experiment(train, train_covid, holdout, holdout_covid,
                                                    generated, synthetic_covid, **(utility_options or {}))
            results["utility_labels"] = "drawn" if given else "classifier"
    elif with_utility:
        raise UserError("--utility needs a dataset whose train and test splits hold both covid "
                        "and non_covid scans")
    if generated_labels is not None and (train_covid is None or holdout_covid is None):
        results["by_class"] = by_class.skipped("the dataset's scans carry no covid/non_covid labels")
    elif generated_labels is not None:
        results["by_class"] = by_class.evaluate(
            train, by_class.names_of(train_covid), holdout, by_class.names_of(holdout_covid),
            generated, np.asarray(LABELS)[generated_labels], seed=seed, **probabilities)
    return results, memo



IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_images(folder: str, height: int, width: int
                ) -> tuple[np.ndarray, list[str], int, list[str | None]]:
    """Every image file in `folder` (sorted by name) as (N, H, W, 1) float32 in [-1, 1].

    Colour is converted to grey (ITU-R 601 luma), 16-bit greys are scaled by 65535, and images of
    another size are resized to (height, width) with a Lanczos filter. Returns the images, their
    file names, how many were resized, and each file's `label` PNG tag (None without one).

    Raises:
        ConfigError: no folder, or fewer than 2 images in it (exit 2: a retry will not help).
    """
    from PIL import Image

    try:
        local = storage.local_copy(folder)
    except storage.NotFound:
        local = None
    if local is None or not local.is_dir():
        raise ConfigError("--images", f"{folder}: no such folder")
    files = sorted(p for p in local.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ConfigError("--images", f"{folder}: found {len(files)} image file(s) "
                          f"({', '.join(IMAGE_SUFFIXES)}); need at least 2")
    out, resized, labels = [], 0, []
    for path in files:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                x = Image.fromarray(np.asarray(im, dtype=np.float32) / 65535.0, mode="F")
            else:
                x = Image.fromarray(np.asarray(im.convert("L"), dtype=np.float32) / 255.0, mode="F")
            # PNG text chunks (after the pixels, read once they are); other formats have none.
            labels.append(getattr(im, "text", {}).get(by_class.LABEL_TAG))
        if x.size != (width, height):
            x = x.resize((width, height), Image.Resampling.LANCZOS)
            resized += 1
        out.append(np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0) * 2.0 - 1.0)
    return np.stack(out)[..., None], [p.name for p in files], resized, labels


def evaluate_images(
    images_dir: str,
    data_dir: str,
    dataset_config: str,
    out: str,
    seed: int = 0,
    inception_weights: str = "",
    utility: bool = False,
    utility_options: dict | None = None,
) -> dict[str, Any]:
    """Evaluate the images in `images_dir` as if a generator drew them, against the prepared
    covid_ct/`dataset_config` in `data_dir`; write the report to `out`; return its JSON.

    When every image carries a `label` PNG tag of LABELS they are also evaluated class by class;
    when only some do, the log and the report say so and the set is evaluated as a whole."""
    # Any prepared dataset is a fair reference for a report, the demo phantoms included.
    config = validate(TrainConfig(dataset_config=dataset_config, data_dir=data_dir,
                                  allow_synthetic_data=True))
    extractor = inception.extractor(inception_weights)
    (train, _), (holdout, _) = real = data.load_split(config, "train"), data.load_split(config, "test")
    generated, names, resized, tags = read_images(images_dir, config.height, config.width)
    labels, no_labels_note = by_class.labels_from_tags(tags)
    log.info(f"evaluating {len(generated)} images of {images_dir} ({resized} resized to "
             f"{config.height}x{config.width}) against {len(train)} train and {len(holdout)} "
             "hold-out scans, " + (f"by class: {_class_counts(labels)}" if labels is not None
                                   else f"not by class: {no_labels_note}"))
    run = {"uri": images_dir, "checkpoint": None, "epoch": None, "seed": seed,
           "dataset": f"covid_ct/{dataset_config}", "data_dir": data_dir,
           "inception_weights": inception_weights, "files": names, "resized": resized}
    return _report(out, run, real, generated, generated_labels=labels,
                   no_labels_note=no_labels_note, seed=seed, extractor=extractor,
                   with_utility=utility, utility_options=utility_options)


def _report(out: str, run: dict, real, generated: np.ndarray, **options) -> dict[str, Any]:
    """`evaluate_arrays(..., **options)` of `generated` against `real` ((train images, is-covid),
    (hold-out images, is-covid)), with `run` as the report's run block; the report written to
    `out` (folder or gs://) and its verdict logged. Returns the report's JSON content."""
    from job.evaluation import report

    (train, train_covid), (holdout, holdout_covid) = real
    results, memo = evaluate_arrays(train, holdout, generated, train_covid=train_covid,
                                    holdout_covid=holdout_covid, **options)
    results["run"] = run
    # The training scans the whole-set figures used: memorisation's neighbours index into them.
    ref = of_classes(train_covid, options.get("trained_on", ()))
    with storage.staged_output(out) as folder:
        doc = report.write(folder, results, memo, train=train[ref], generated=generated,
                           train_covid=None if train_covid is None else train_covid[ref])
    log.info(doc["verdict"])
    return doc


def _class_counts(labels: np.ndarray) -> str:
    """"covid 12, non_covid 30" for (N,) class indices into LABELS (the log's by-class line)."""
    counts = np.bincount(labels, minlength=len(LABELS))
    return ", ".join(f"{name} {c}" for name, c in zip(LABELS, counts) if c)


def draw(run_uri: str, checkpoint: str, n: int, seed: int):
    """(generated, labels, config, epoch, real): `n` images (N, H, W, 1) in [-1, 1] of the run's
    EMA generator at `checkpoint`; their (n,) int class indices into LABELS or None (a
    conditional run's planned by `by_class.plan`, a one-class run's all of its class); the run's
    config and epoch; the real ((train, is-covid), (test, is-covid)) splits of its dataset."""
    from job.generate import generate_images, load_generator

    generator, config, epoch = load_generator(run_uri, checkpoint)
    real = data.load_split(config, "train"), data.load_split(config, "test")
    train_covid = real[0][1]
    labels, names = None, config.label_names or LABELS
    if config.conditional:
        train_names = by_class.names_of(train_covid) if train_covid is not None else np.array([])
        labels = by_class.plan(n, {c: int(np.sum(train_names == c)) for c in names}, seed)
    generated = generate_images(generator, config, n, seed, labels)
    if not config.conditional and len(names) == 1:
        labels = np.full(n, LABELS.index(names[0]), np.int32)  # one class learnt: all of its class
    return generated, labels, config, epoch, real


def evaluate(
    run_uri: str,
    out: str,
    checkpoint: str = "latest",
    n: int = 1000,
    seed: int = 0,
    inception_weights: str = "",
    utility: bool = False,
    utility_options: dict | None = None,
) -> dict[str, Any]:
    """Generate `n` images from `run_uri` at `checkpoint`, evaluate them, write the report to
    `out` (folder or gs://); returns the report's JSON content.

    A conditional run draws the n images across the classes it trained on, in proportion to the
    training split's class counts (`by_class.plan`), and is also evaluated class by class.

    Raises:
        UserError: n below 2 (2 per class for a conditional run); no run or checkpoint.
    """
    if n < 2:
        raise UsageError(f"--n must be at least 2, got {n}")
    extractor = inception.extractor(inception_weights)  # fail on a bad file before any work
    generated, labels, config, epoch, real = draw(run_uri, checkpoint, n, seed)
    (train, _), (holdout, _) = real
    names = config.label_names or LABELS
    log.info(f"evaluating {n} images of {run_uri} (epoch {epoch}) against {len(train)} train and "
             f"{len(holdout)} hold-out scans"
             + (f", by class: {_class_counts(labels)}" if labels is not None else ""))
    run = {"uri": run_uri, "checkpoint": checkpoint, "epoch": epoch, "seed": seed,
           "dataset": f"covid_ct/{config.dataset_config}", "data_dir": config.data_dir,
           "inception_weights": inception_weights}
    return _report(out, run, real, generated, generated_labels=labels, no_labels_note=(
        "the run's generator is unconditional: its images have no class (a run trained with "
        "--set conditional=true is evaluated by class)"), trained_on=tuple(names), seed=seed,
        extractor=extractor, with_utility=utility, utility_options=utility_options)
