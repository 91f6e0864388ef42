"""Export a run's synthetic scans: near-copies dropped, as tagged PNGs and as the TFDS dataset
`covid_ct_synthetic` (tfds_covidct/covid_ct_synthetic/), with a model card beside it.

    covidct generate --run runs/demo --n 1000 --out out/synthetic --drop-copies --tfds data/tfds
    # then: tfds.load("covid_ct_synthetic/64", data_dir="data/tfds", split="train")

The dataset has the real `covid_ct` dataset's configs and features (image, label, source,
file_name), so the two can be mixed with tf.data for augmentation research. Its builder reads
only PNGs tagged synthetic, so a real scan cannot slip into it. A conditional run's `label` is the
class its generator was asked for (`--label`); an unconditional run's is what a small classifier
trained on the real training split calls the image (the PNG's `covid_probability` tag keeps its
score). The PNG's `label_source` tag says which.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import numpy as np

from job import images, storage
from job.errors import UserError
from job.evaluation import classifier, memorisation, quality
from job.training import data
from tfds_covidct.covid_ct_synthetic import covid_ct_synthetic_dataset_builder as synthetic_builder
from tfds_covidct.covid_ct_synthetic.tags import LABELS
from tfds_covidct.errors import DatasetError

log = logging.getLogger("covidct")

NAME = synthetic_builder.NAME
MODEL_CARD = "MODEL_CARD.md"


def build(png_dir: str | pathlib.Path, data_dir: str, config_name: str) -> None:
    """Build `covid_ct_synthetic/<config_name>` from `png_dir` into `data_dir` (folder or gs://)."""
    with storage.staged_output(data_dir) as local:
        try:
            synthetic_builder.build(png_dir, local, config_name)
        except DatasetError as error:
            raise UserError(str(error)) from None


def pseudo_labels(train, train_covid, generated, *, seed: int = 0) -> np.ndarray:
    """P(covid) for each generated image: a classifier's score, or 1/0 for a one-class dataset."""
    if train_covid is None:
        raise UserError(f"{NAME} needs the real dataset's covid/non_covid labels")
    if classifier.has_both_classes(train_covid):
        model = classifier.train_classifier(train, train_covid, seed=seed)
        return classifier.covid_probability(model, generated)
    return np.full(len(generated), float(train_covid[0]))


def write_pngs(folder: pathlib.Path, drawn, indices, covid_p, tags: dict[str, str]) -> None:
    """One tagged PNG per kept image; the file name keeps its index among all generated ones."""
    for image, index, p in zip(drawn, indices, covid_p):
        label = LABELS[0] if p > 0.5 else LABELS[1]
        images.save_png(images.grid(image[None], cols=1), folder / f"synthetic_{index:05d}.png",
                         synthetic_tags={**tags, "index": str(index), "label": label,
                                         "covid_probability": f"{p:.4f}"})


def model_card(info: dict[str, Any]) -> str:
    """MODEL_CARD.md: the data and run behind the set, what it is for, how it scored, its limits."""
    q, mem, div = info["quality"], info["memorisation"], info["diversity"]
    return "\n".join([
        f"# Model card: {NAME}/{info['config']}", "",
        "Synthetic CT slices drawn by a DCGAN (covidct-gan). **Not patient scans.** Every PNG "
        "carries the text tags synthetic=true and generator=covidct-gan.", "",
        "## Training data and run", "",
        f"- Real data: `covid_ct/{info['config']}` in `{info['data_dir']}` ({info['train']} training "
        f"scans, {info['holdout']} hold-out scans).",
        f"- Run: `{info['run']}`, checkpoint `{info['checkpoint']}` (epoch {info['epoch']}), "
        f"latent seed {info['seed']}; EMA generator.",
        f"- Exported: {info['kept']} of {info['generated']} generated images"
        + (f" ({info['generated'] - info['kept']} near-copies of training scans dropped)."
           if info["drop_copies"] else " (near-copies were not dropped)."),
        f"- Labels ({info.get('label_source', 'classifier')}): " + (
            "the class the conditional generator was asked for." if info.get("label_source") not in
            (None, "classifier") else "the generator is unconditional; `label` is what a small CNN trained "
            "on the real training split calls each image (`covid_probability` PNG tag), not ground "
            "truth."), "",
        "## Intended use", "",
        "Augmentation research, not diagnosis: studies of data augmentation and of generative "
        "models for lung CT. Not for diagnosis, "
        "clinical decisions, or training any model used on patients without clinical validation; "
        "not a substitute for real data in evaluation.", "",
        "## Evaluation (generated vs real; hold-out vs train is the floor)", "",
        f"- SWD x1e3: vs train {q['swd_generated_vs_train']:.4g}, vs hold-out "
        f"{q['swd_generated_vs_holdout']:.4g}; hold-out vs train {q['swd_holdout_vs_train']:.4g} "
        f"({q['images_per_set']} images per set).",
        f"- Diversity: coverage of the hold-out {div['diversity_ratio']:.3g} of real training scans'.",
        f"- Memorisation: {mem['flagged']} of {mem['generated']} generated images were closer to a "
        f"training scan than the closest real hold-out/train pair (d = {mem['threshold']:.4f}); "
        f"median nearest distance generated {mem['generated_quantiles']['q50']:.3f}, real "
        f"{mem['holdout_quantiles']['q50']:.3f}.",
        f"- Share labelled covid: {info['covid_share']:.1%} (training split: "
        f"{info['train_covid_share']:.1%}).",
        "- Full report: `covidct evaluate --run RUN --checkpoint CKPT --out DIR`.", "",
        "## Known failure modes", "",
        "- Anatomy can be implausible (asymmetric lungs, broken ribs, vessels that end abruptly); "
        "a metric near the floor does not rule this out: look at the images.",
        "- Mode collapse: few distinct images (a low diversity ratio).",
        "- Memorisation: the check compares downsampled, normalised slices with small shifts; a "
        "copy that is flipped, rotated, or of a patient's neighbouring slice may not be flagged.",
        "- Pseudo-labels inherit the classifier's errors; lesions may be absent, faint or invented.",
        "- Biases of the source data (scanners, sites, hospital overlays removed by cleaning) carry over.",
        "",
    ])


def export(
    run_uri: str,
    out: str,
    n: int,
    checkpoint: str = "latest",
    seed: int = 0,
    drop_copies: bool = False,
    tfds_data_dir: str = "",
    label: str | None = None,
) -> dict[str, Any]:
    """`covidct generate` with `--drop-copies` and/or `--tfds DATA_DIR`; returns the card's facts.

    Writes the kept PNGs and MODEL_CARD.md to `out` (folder or gs://); with `tfds_data_dir`,
    builds `covid_ct_synthetic/<config>` there and puts MODEL_CARD.md in its dataset folder.
    """
    from job.generate import generate_images, label_plan, load_generator

    if n < 2:
        raise UserError(f"--n must be at least 2, got {n}")
    generator, config, epoch = load_generator(run_uri, checkpoint)
    drawn_labels = label_plan(config, label, n)
    n = n if drawn_labels is None else len(drawn_labels)
    train, train_covid = data.load_split(config, "train")
    holdout, _ = data.load_split(config, "test")
    generated = generate_images(generator, config, n, seed, drawn_labels)
    memo = memorisation.check(generated, train, holdout)
    keep = np.flatnonzero(~memo.flagged) if drop_copies else np.arange(n)
    if len(keep) == 0:
        raise UserError(f"all {n} generated images are near-copies of training scans: nothing "
                        "to export (the run has memorised its data)")
    if drop_copies and len(keep) < n:
        log.info(f"dropped {n - len(keep)} of {n} generated images as near-copies of training scans")
    kept = generated[keep]
    if drawn_labels is None:  # unconditional: a classifier's call is the label
        covid_p, label_source = pseudo_labels(train, train_covid, kept, seed=seed), "classifier"
    else:  # the class the conditional generator was asked for
        covid_p = (drawn_labels[keep] == LABELS.index("covid")).astype(np.float64)
        label_source = "conditional generator"
    info = {
        "run": run_uri, "checkpoint": checkpoint, "epoch": epoch, "seed": seed,
        "config": config.dataset_config, "data_dir": config.data_dir,
        "train": len(train), "holdout": len(holdout), "generated": n, "kept": len(keep),
        "drop_copies": drop_copies, "covid_share": float(np.mean(covid_p > 0.5)),
        "train_covid_share": float(np.mean(train_covid)) if train_covid is not None else float("nan"),
        **dict(zip(("quality", "diversity"), quality.measure(train, holdout, kept, seed=seed))),
        "memorisation": memo.summary(), "label_source": label_source,
    }
    tags = {"run": run_uri, "epoch": str(epoch), "checkpoint": checkpoint, "seed": str(seed),
            "source": f"synthetic:{run_uri}@epoch{epoch}", "label_source": label_source}
    card = model_card(info)
    with storage.staged_output(out) as folder:
        write_pngs(folder, kept, keep, covid_p, tags)
        (folder / MODEL_CARD).write_text(card)
        if tfds_data_dir:
            build(folder, tfds_data_dir, config.dataset_config)
    if tfds_data_dir:
        storage.write_bytes(storage.join(tfds_data_dir, NAME, MODEL_CARD), card.encode())
        log.info(f"built {NAME}/{config.dataset_config} ({len(keep)} images) in {tfds_data_dir}")
    log.info(f"wrote {len(keep)} synthetic images and {MODEL_CARD} to {out}")
    return info
