"""Evaluation by class: a class-conditional generator judged one class at a time.

A conditional generator can draw convincing scans and still ignore the class it is asked for:
its whole set then matches the real scans while its "covid" images are non-COVID ones. So each
class's generated images are compared with that class's real scans only:

- **quality**: SWD and intensity W1 of the class's generated images against the class's real
  hold-out, beside the class's real floor (its hold-out vs its training scans), equal counts
  (`quality.quality`);
- **class fidelity**: the share of the class's generated images that the covid / non_covid probe
  (`classifier`) gives that class, beside the share of the class's real hold-out scans it gives
  it: the probe's own recall, the most a generated share can be expected to reach;
- **memorisation**: `memorisation.check` against the class's training scans, calibrated on the
  class's hold-out: exact at any hold-out size M >= 1, but it only detects a copier of more than
  `memorisation.detectable_share(M)` of its images, which the report shows.

A class with too few real scans for a part gets a note instead of that part, and the verdict
does not judge it. Pure numpy on (N, H, W, 1) arrays in [-1, 1]; classes are the names of LABELS.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from job.errors import UserError
from job.evaluation import memorisation, quality
from tfds_covidct.covid_ct.sources import LABELS

COVID, NON_COVID = LABELS  # the dataset's two classes; the probe's positive class is COVID
MIN_QUALITY_IMAGES = 2  # `quality.quality` needs 2 images per set
MIN_MEMORISATION_HOLDOUT = 1  # the test's threshold is the closest hold-out scan's distance
LABEL_TAG = "label"  # the PNG text chunk `covidct generate` writes a conditional image's class in


def names_of(is_covid: np.ndarray) -> np.ndarray:
    """(N,) bool is-covid flags (as `data.load_split` gives them) -> (N,) class names."""
    return np.where(np.asarray(is_covid, bool), COVID, NON_COVID)


def selection(classes: Sequence[str]) -> tuple[str, ...]:
    """`classes` when they are some of LABELS but not all (a run's `labels`), else (): every class."""
    return () if not classes or set(classes) >= set(LABELS) else tuple(classes)


def plan(n: int, train_counts: Mapping[str, int], seed: int = 0) -> np.ndarray:
    """(n,) int32 class indices into LABELS for evaluating a conditional run: each class of
    `train_counts` (name -> training scans) gets a share of n in proportion to its training
    scans (largest remainders), at least MIN_QUALITY_IMAGES, in a seeded random order so the
    report's sample rows show every class.

    Raises:
        UserError: no class, or n below MIN_QUALITY_IMAGES per class.
    """
    names = list(train_counts)
    if not names or n < MIN_QUALITY_IMAGES * len(names):
        raise UserError(f"--n {n} is too few to evaluate {len(names)} class(es) {names}: each "
                        f"needs at least {MIN_QUALITY_IMAGES} images")
    counts = np.array([train_counts[c] for c in names], np.float64)
    share = n * counts / counts.sum() if counts.sum() > 0 else np.full(len(names), n / len(names))
    k = np.maximum(np.floor(share).astype(int), MIN_QUALITY_IMAGES)
    while k.sum() < n:
        k[np.argmax(share - k)] += 1
    while k.sum() > n:  # the minimum overshot: take from the class furthest above its share
        k[np.argmax(np.where(k > MIN_QUALITY_IMAGES, k - share, -np.inf))] -= 1
    labels = np.repeat([LABELS.index(c) for c in names], k).astype(np.int32)
    return np.random.default_rng(seed).permutation(labels)


def labels_from_tags(tags: Sequence[str | None]) -> tuple[np.ndarray | None, str | None]:
    """(N,) int32 class indices into LABELS from each image's `label` tag (None: no tag), or
    (None, why) when not every image carries a class of LABELS: a class is never guessed."""
    known = [t in LABELS for t in tags]
    if all(known):
        return np.array([LABELS.index(t) for t in tags], np.int32), None
    if all(t is None for t in tags):
        return None, f"the images carry no `{LABEL_TAG}` tag"
    other = sorted({t for t in tags if t is not None and t not in LABELS})
    return None, (f"only {sum(known)} of {len(tags)} images carry a `{LABEL_TAG}` tag in "
                  f"{list(LABELS)} ({sum(t is None for t in tags)} none"
                  + (f", others {other}" if other else "") + "): evaluated as a whole, no class "
                  "guessed")


def skipped(note: str) -> dict[str, Any]:
    """The section when the generated images have no classes: `note` says why, in one line."""
    return {"note": note, "labels": None, "classes": {}}


def evaluate(
    train: np.ndarray,
    train_names: np.ndarray,
    holdout: np.ndarray,
    holdout_names: np.ndarray,
    generated: np.ndarray,
    generated_names: np.ndarray,
    *,
    holdout_p: np.ndarray | None = None,
    generated_p: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The "By class" section: {"note": None, "labels": each generated image's class,
    "classes": {name: row}} for each class among `generated_names`, in LABELS order.

    `*_names` are (N,) class names of each image; `*_p` the probe's covid probability of each
    hold-out and generated image (None: no class fidelity). A row holds the counts, `quality`
    (with `ratios` over the class's floor), `classifier` shares, the `memorisation` summary
    with the flagged images' indices into `generated`, and `notes` for parts left out.
    """
    generated_names = np.asarray(generated_names)
    classes = {}
    for name in (c for c in LABELS if c in set(generated_names.tolist())):
        tr, ho, ge = train_names == name, holdout_names == name, generated_names == name
        row: dict[str, Any] = {
            "counts": {"train": int(tr.sum()), "holdout": int(ho.sum()), "generated": int(ge.sum())},
            "quality": None, "ratios": None, "classifier": None, "memorisation": None,
            "flagged_indices": [], "notes": []}
        if min(row["counts"].values()) >= MIN_QUALITY_IMAGES:
            row["quality"] = quality.quality(train[tr], holdout[ho], generated[ge], seed=seed)
            row["ratios"] = quality.floor_ratios(row["quality"])
        else:
            row["notes"].append(f"quality not judged: it needs {MIN_QUALITY_IMAGES} images of the "
                                f"class per set, train/hold-out/generated {_counts(row)}")
        if row["counts"]["holdout"] >= MIN_MEMORISATION_HOLDOUT and row["counts"]["train"]:
            memo = memorisation.check(generated[ge], train[tr], holdout[ho])
            row["memorisation"] = memo.summary()
            row["flagged_indices"] = np.flatnonzero(ge)[memo.flagged_indices].tolist()
        else:
            missing = "hold-out" if row["counts"]["train"] else "training"
            row["notes"].append(f"memorisation not judged: no {missing} scans of the class, "
                                f"train/hold-out/generated {_counts(row)}")
        if generated_p is not None and holdout_p is not None:
            called = (lambda p: p > 0.5) if name == COVID else (lambda p: p <= 0.5)
            row["classifier"] = {"generated_share": float(np.mean(called(generated_p[ge]))),
                                 "holdout_share": (float(np.mean(called(holdout_p[ho])))
                                                   if ho.any() else None)}
        classes[name] = row
    return {"note": None, "labels": generated_names.tolist(), "classes": classes}


def _flagged(indices: list[int], shown: int = 20) -> str:
    if not indices:
        return ""
    more = f" and {len(indices) - shown} more (report.json)" if len(indices) > shown else ""
    return f"; flagged generated images: {', '.join(map(str, indices[:shown]))}{more}"


def _counts(row: dict) -> str:
    return "/".join(str(row["counts"][k]) for k in ("train", "holdout", "generated"))


def judge(section: dict, max_ratio: float) -> dict | None:
    """The verdict's part for the classes, {"part": "classes", "ok", "text"}, or None when the
    images have no classes. A class fails when its quality exceeds `max_ratio` times its floor
    or memorisation is detected in it; failing classes come first, named."""
    if not section["classes"]:
        return None
    failing, passing = [], []
    for name, row in section["classes"].items():
        bad, good = [], []
        if row["quality"] is not None:
            ok, text = quality.against_floor(row["quality"], max_ratio)
            (good if ok else bad).append(text)
        m = row["memorisation"]
        if m is not None:
            (bad if m["memorisation"] else good).append(
                f"memorisation {memorisation.verdict_text(m)}")
        good += [n.split(":")[0] for n in row["notes"]]
        if bad:
            failing.append(f"{name} fails: {'; '.join(bad)}")
        else:
            passing.append(f"{name}: {'; '.join(good)}")
    return {"part": "classes", "ok": not failing, "text": " / ".join(failing + passing)}


def markdown(section: dict, holdout_accuracy: float | None) -> list[str]:
    """The report's "By class" lines: a table of `section`'s classes, or why there is none."""
    lines = ["## By class", ""]
    if not section["classes"]:
        return lines + [f"Not evaluated: {section['note']}."]
    lines += [
        "Each class's generated images against that class's real scans only: a generator that "
        "ignores the class it is asked for can match the scans as a whole, not class by class. "
        "Floors are the class's hold-out vs its training scans at equal counts (few hold-out "
        "scans make a noisy floor: see the counts).", "",
        "| class | train / hold-out / generated | SWD x1e3 vs hold-out (floor, ratio) | intensity "
        "W1 vs hold-out (floor, ratio) | called this class: generated (real hold-out) | "
        "memorisation: flagged / expected (p) |",
        "|---|---|---|---|---|---|"]
    for name, row in section["classes"].items():
        q, r, c, m = row["quality"], row["ratios"], row["classifier"], row["memorisation"]
        figures = ["n/a", "n/a"] if q is None else [
            f"{q[f'{k}_generated_vs_holdout']:.4g} ({q[f'{k}_holdout_vs_train']:.4g}, {r[k]:.2f}x)"
            for _, k in quality.FLOOR_FIGURES]
        shares = "n/a" if c is None else (
            f"{c['generated_share']:.0%} ("
            + ("n/a" if c["holdout_share"] is None else f"{c['holdout_share']:.0%}") + ")")
        memo = "n/a" if m is None else (
            f"{m['flagged']} / {m['expected_by_chance']:.1f} (p = {m['p_value']:.2g})"
            + (" **memorisation**" if m["memorisation"] else ""))
        lines.append(f"| {name} | {_counts(row).replace('/', ' / ')} | {figures[0]} | "
                     f"{figures[1]} | {shares} | {memo} |")
    lines.append("")
    if holdout_accuracy is not None:
        lines.append(f"The classifier's accuracy on the whole real hold-out is "
                     f"{holdout_accuracy:.1%}; a generated share can be read only against the "
                     "real hold-out share beside it (a small hold-out makes both coarse).")
        lines.append("")
    for name, row in section["classes"].items():
        m = row["memorisation"]
        if m is not None:
            lines.append(f"- {name}: memorisation {memorisation.verdict_text(m)}; with {m['holdout']} "
                         f"hold-out scans the test detects a copier of more than about "
                         f"{m['detectable_share']:.0%} of its images"
                         + _flagged(row["flagged_indices"]))
        lines += [f"- {name}: {note}" for note in row["notes"]]
    return lines
