"""The evaluation report: report.md and report.json beside the PNG figures they show.

Pure Pillow and numpy (no matplotlib): the memorisation histogram is drawn bar by bar. Figures
holding only generated images are tagged synthetic like every sample (job.images.save_png);
figures that mix real scans and generated images say in their PNG text which row or column is
which, so a real scan is never passed off as synthetic nor the reverse. The markdown ends with
the verdict line (`job.evaluation.verdict`), which is also `verdict` in the JSON.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from job import images
from job.evaluation import by_class, utility
from job.evaluation.verdict import QUALITY_MAX_RATIO, judge, verdict
from job.evaluation.memorisation import Memorisation

COMPARE_COLUMNS = 8  # images per row of the real-vs-synthetic figure
GRID_IMAGES = 64  # the larger sample grid
PAIRS_PER_PAGE = 40  # flagged pairs per PNG
BY_CLASS_LABEL_PX = 150  # room for "non_covid real (train)"
PAIR_LABEL_PX = 300  # room for "g12 t3 d=0.012 mirrored, zoom 1.05, shift (2, -1)"
CLOSEST_SHOWN = 8  # pairs shown when nothing is flagged, so the reader can judge by eye
HIST_BINS = 40
HIST_SIZE = (720, 360)
HOLDOUT_COLOUR, GENERATED_COLOUR, THRESHOLD_COLOUR = (66, 120, 200), (230, 140, 40), (200, 30, 30)


def _save_figure(image: Image.Image, path: pathlib.Path, description: str) -> None:
    """A figure that mixes real and generated images (or none): PNG text says what is what."""
    info = PngImagePlugin.PngInfo()
    info.add_text("synthetic", "mixed")
    info.add_text("generator", images.GENERATOR_NAME)
    info.add_text("Comment", description)
    image.save(path, format="PNG", pnginfo=info)


def histogram(generated: np.ndarray, holdout: np.ndarray, threshold: float) -> Image.Image:
    """Nearest-training-image distances: hold-out (the real floor) vs generated, as densities.

    Each bin holds two half-width bars (hold-out left, generated right) scaled to the highest
    density; the red line is the threshold (the closest hold-out -> train distance).
    """
    width, height = HIST_SIZE
    left, right, top, bottom = 56, 16, 40, 44
    hi = max(float(generated.max()), float(holdout.max()), threshold) * 1.05 or 1.0
    edges = np.linspace(0.0, hi, HIST_BINS + 1)
    dens = [np.histogram(v, edges)[0] / len(v) for v in (holdout, generated)]
    peak = max(d.max() for d in dens) or 1.0
    image = Image.new("RGB", HIST_SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    plot_w, plot_h = width - left - right, height - top - bottom
    x_of = lambda v: left + plot_w * v / hi  # noqa: E731
    bin_w = plot_w / HIST_BINS
    for b in range(HIST_BINS):
        for half, (d, colour) in enumerate(zip(dens, (HOLDOUT_COLOUR, GENERATED_COLOUR))):
            if d[b] > 0:
                x0 = left + b * bin_w + half * bin_w / 2
                draw.rectangle([x0, top + plot_h * (1 - d[b] / peak), x0 + bin_w / 2 - 1,
                                top + plot_h], fill=colour)
    draw.line([left, top + plot_h, left + plot_w, top + plot_h], fill="black")
    draw.line([left, top, left, top + plot_h], fill="black")
    for v in np.linspace(0.0, hi, 6):
        draw.line([x_of(v), top + plot_h, x_of(v), top + plot_h + 4], fill="black")
        draw.text((x_of(v) - 12, top + plot_h + 6), f"{v:.2f}", fill="black", font=font)
    draw.text((left + plot_w / 2 - 120, height - 18),
              "distance to the nearest training image", fill="black", font=font)
    draw.text((4, top - 4), f"{peak:.0%}", fill="black", font=font)
    x_t = x_of(threshold)
    for y in range(top, top + plot_h, 8):
        draw.line([x_t, y, x_t, y + 4], fill=THRESHOLD_COLOUR, width=2)
    legend = [(HOLDOUT_COLOUR, f"real hold-out (n={len(holdout)})"),
              (GENERATED_COLOUR, f"generated (n={len(generated)})"),
              (THRESHOLD_COLOUR, f"closest real pair {threshold:.3f}")]
    x = left
    for colour, text in legend:
        draw.rectangle([x, 12, x + 12, 24], fill=colour)
        draw.text((x + 16, 12), text, fill="black", font=font)
        x += 24 + int(draw.textlength(text, font=font))
    return image


def _pair_pages(memo: Memorisation, indices: np.ndarray, train, generated, folder, stem) -> list[str]:
    """Each generated image beside its nearest training scan, PAIRS_PER_PAGE rows per PNG."""
    files = []
    for page, start in enumerate(range(0, len(indices), PAIRS_PER_PAGE), 1):
        rows = [(f"g{i} t{memo.neighbour[i]} d={memo.distance[i]:.3f} {memo.describe(i)}",
                 np.stack([generated[i], train[memo.neighbour[i]]]))
                for i in indices[start : start + PAIRS_PER_PAGE]]
        name = f"{stem}_{page:03d}.png"
        _save_figure(images.side_by_side(rows, label_width=PAIR_LABEL_PX), folder / name,
                     "Left image of each row: synthetic (GAN); right: the nearest real training "
                     "scan as stored. Row label: generated index, training index, distance, and "
                     "how the scan matched (mirrored, zoom, shift in reduced pixels).")
        files.append(name)
    return files


def _classes(trained_on: list[str] | None) -> str:
    """"covid " when the generator learnt from one class of two: what the figures compare with."""
    chosen = by_class.selection(trained_on or ())
    return " and ".join(chosen) + " " if chosen else ""


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _markdown(doc: dict) -> str:
    r, q, m, d = doc["run"], doc["quality"], doc["memorisation"], doc["diversity"]
    files = doc["files"]
    title = (f"# Evaluation of {r['uri']} (checkpoint {r['checkpoint']}, epoch {r['epoch']})"
             if r.get("checkpoint") is not None else f"# Evaluation of the images in {r['uri']}")
    lines = [
        title, "",
        f"{doc['counts']['generated']} generated images (seed {r['seed']}) against "
        f"{doc['counts']['train']} training and {doc['counts']['holdout']} hold-out real "
        f"{_classes(doc.get('trained_on'))}scans of {r['dataset']}. All generated images are "
        "synthetic and marked so in every PNG.", "",
        "## Quality", "",
        f"{q['images_per_set']} generated and {q['images_per_set']} training images, each set "
        f"against all {q.get('holdout_images', 'the')} hold-out scans. Lower is better; the floor "
        "row is real training scans against real scans the generator never saw.", "",
        "| comparison | SWD x1e3 | intensity W1 | FID | KID |", "|---|---|---|---|---|",
    ]
    for key, label in (("generated_vs_train", "generated vs train"),
                       ("generated_vs_holdout", "generated vs hold-out"),
                       ("holdout_vs_train", "train vs hold-out (floor)")):
        lines.append(f"| {label} | {_fmt(q[f'swd_{key}'])} | {_fmt(q[f'intensity_w1_{key}'])} | "
                     f"{_fmt(q.get(f'fid_{key}'))} | {_fmt(q.get(f'kid_{key}'))} |")
    lines += ["", "SWD compares structure (each set's patches are normalised by that set), so it "
              "is blind to grey levels; the intensity W1 (mean gap between the sorted pixel "
              "values, [-1, 1] units) sees exactly those. Both must stay within "
              f"{QUALITY_MAX_RATIO:g}x their floor."]
    if "fid_generated_vs_train" not in q:
        lines += ["", "FID/KID: not computed (no Inception weights given)."]
    lines += [
        "", "## Real vs synthetic", "",
        f"![real vs synthetic]({files['real_vs_synthetic']})", "",
        f"![generated samples]({files['samples']})", "",
        "## Diversity", "",
        f"Coverage (Naeem et al. 2020): the share of hold-out scans with a generated image "
        f"closer than their {d['neighbours']}th nearest hold-out scan, on {d['side']} px "
        f"layouts: generated {_fmt(d['coverage_generated'])}, real training scans "
        f"{_fmt(d['coverage_real'])} ({d['images_per_set']} images each); ratio "
        f"{_fmt(d['diversity_ratio'])} (1: as varied as the scans; a generator of one pose "
        "scores ~0.1).", "",
        "## Class fidelity", "",
    ]
    cf = doc["class_fidelity"]
    if cf is None:
        lines.append("Not computed: the dataset's splits do not both hold covid and non_covid scans.")
    else:
        lines.append(
            f"A small CNN trained on the real training split scores accuracy "
            f"{_fmt(cf['holdout_accuracy'])} (AUC {_fmt(cf['holdout_auc'])}) on the real hold-out. "
            f"It calls {cf['generated_covid_share']:.1%} of generated images covid "
            f"({cf['train_covid_share']:.1%} of training scans are covid).")
    if doc["utility"] is not None:
        labels = ("the class each was drawn as" if doc.get("utility_labels") == "drawn" else
                  "the real classifier's labels (the images have no class of their own)")
        lines += ["", "## Utility", "", f"Synthetic images carry {labels}."] + utility.markdown(doc["utility"])
    lines += [""] + by_class.markdown(doc["by_class"], cf and cf["holdout_accuracy"])
    if files["by_class"]:
        lines += ["", f"![real and generated by class]({files['by_class']})"]
    gq, hq = m["generated_quantiles"], m["holdout_quantiles"]
    lines += [
        "", "## Memorisation", "",
        "Distance of each image to its nearest training scan (normalised pixels at <= 32 px, "
        "minimum over shifts of up to 1/8 of the side, zooms of up to 10% and a left-right "
        "mirror; 0 = copy, ~1.4 = unrelated). Threshold: the closest real hold-out -> train "
        f"pair, {m['threshold']:.4f}.", "",
        "| quantile | min | 1% | 5% | 25% | median |", "|---|---|---|---|---|---|",
        "| generated | " + " | ".join(_fmt(gq[k]) for k in ("q00", "q01", "q05", "q25", "q50")) + " |",
        "| real hold-out | " + " | ".join(_fmt(hq[k]) for k in ("q00", "q01", "q05", "q25", "q50")) + " |",
        "", f"![distance histogram]({files['histogram']})", "",
        f"Flagged: {m['flagged']} of {m['generated']} ({m['flagged_share']:.1%}). A generator "
        "whose images are as novel as real unseen scans has each one below the minimum of "
        f"{m['holdout']} hold-out distances with probability 1/{m['holdout'] + 1}, about "
        f"{m['expected_by_chance']:.1f} in all; the count is then BetaBinomial(n, 1, M) (the "
        "threshold itself is random). Test: one-sided, P(K >= "
        f"{m['flagged']}) = {m['p_value']:.3g}; memorisation when p < {m['alpha']:g} or on any "
        f"exact copy ({m['exact_copies']} here). With {m['holdout']} hold-out scans the test "
        f"detects a generator that copies more than about {m['detectable_share']:.0%} of its "
        "images.",
    ]
    pages = files["flagged_pairs"] or files["closest_pairs"]
    caption = ("Every flagged image (left) beside its nearest training scan (right):"
               if files["flagged_pairs"] else
               f"None flagged; the {CLOSEST_SHOWN} closest pairs, generated left, training right:")
    lines += ["", caption, ""] + [f"![pairs]({p})" for p in pages]
    lines += ["", doc["verdict"], ""]
    return "\n".join(lines)


def write(folder: str | pathlib.Path, results: dict, memo: Memorisation, *, train, generated,
          train_covid: np.ndarray | None = None) -> dict:
    """Write report.md, report.json and the figures into the local `folder`; return the JSON.

    `train_covid` ((N,) bool, True = covid) puts training scans beside each class's generated
    images when `results["by_class"]` has classes."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tags = {"run": results["run"]["uri"], "epoch": str(results["run"]["epoch"])}
    k = min(COMPARE_COLUMNS, len(train), len(generated))
    files = {"real_vs_synthetic": "real_vs_synthetic.png", "samples": "samples.png",
             "histogram": "memorisation_histogram.png"}
    _save_figure(images.side_by_side([("real (train)", train[:k]), ("generated", generated[:k])]),
                 folder / files["real_vs_synthetic"],
                 "Top row: real training scans; bottom row: synthetic images from the GAN.")
    images.save_png(images.grid(generated[:GRID_IMAGES]), folder / files["samples"],
                     synthetic_tags=tags)
    _save_figure(histogram(memo.distance, memo.reference_distance, memo.threshold),
                 folder / files["histogram"], "Histogram of nearest-training-image distances.")
    files["by_class"] = _by_class_figure(results["by_class"], train, train_covid, generated, folder)
    flagged = memo.flagged_indices
    files["flagged_pairs"] = _pair_pages(memo, flagged, train, generated, folder, "flagged_pairs")
    closest = np.argsort(memo.distance, kind="stable")[:CLOSEST_SHOWN]
    files["closest_pairs"] = ([] if len(flagged) else
                              _pair_pages(memo, closest, train, generated, folder, "closest_pairs"))
    parts = judge(results)
    doc = {**results, "files": files, "verdict_parts": parts, "passed": all(p["ok"] for p in parts),
           "verdict": verdict(parts), "memorisation_rows": memo.rows()}
    (folder / "report.md").write_text(_markdown(doc))
    (folder / "report.json").write_text(json.dumps(_plain(doc), indent=1))
    return doc


def _by_class_figure(section, train, train_covid, generated, folder) -> str | None:
    """Per class, a row of its training scans over a row of its generated images; None when the
    images have no classes."""
    if not section["classes"] or train_covid is None:
        return None
    rows = []
    real_names, generated_names = by_class.names_of(train_covid), np.asarray(section["labels"])
    for name in section["classes"]:
        real, drawn = train[real_names == name], generated[generated_names == name]
        k = min(COMPARE_COLUMNS, len(real), len(drawn))
        rows += [(f"{name} real (train)", real[:k]), (f"{name} generated", drawn[:k])] if k else []
    if not rows:
        return None
    _save_figure(images.side_by_side(rows, label_width=BY_CLASS_LABEL_PX), folder / "by_class.png",
                 "Per class: the row labelled 'real (train)' holds real training scans of the "
                 "class; the row labelled 'generated' below it, synthetic images drawn as that class.")
    return "by_class.png"


def _plain(value: Any) -> Any:
    """NaN -> null, so report.json is strict JSON (NaN is not)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
