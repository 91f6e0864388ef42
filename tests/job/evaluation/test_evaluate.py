"""Generator evaluation on constructed cases with known answers (job.evaluate, job.memorisation,
job.report, job.synthetic_dataset), and once end to end on a trained smoke run (heavy).

"Scans" are smoothed random fields: different draws are as unlike as different patients, so the
known answers are exact: copies sit at distance ~0, noise far from everything.
"""

import json
import math

import numpy as np
import pytest
import scipy.ndimage
import tensorflow_datasets as tfds
from PIL import Image

from job import export, images, storage
from job.evaluation import classifier, evaluate, memorisation, quality, report, verdict
from job.errors import VERDICT_FAIL_EXIT_CODE, UserError
from tests.helpers import shifted, smoke


def scans(n, size=28, seed=0):
    rng = np.random.default_rng(seed)
    x = scipy.ndimage.gaussian_filter(rng.standard_normal((n, size, size)), (0, 2, 2))
    x = x / np.abs(x).max(axis=(1, 2), keepdims=True)
    return x[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def real():
    return scans(120, seed=1), scans(40, seed=2)


RUN = {"uri": "runs/constructed", "checkpoint": "latest", "epoch": 3, "seed": 0,
       "dataset": "covid_ct/28", "data_dir": "data/tfds", "inception_weights": ""}


def test_a_generator_that_returns_training_images_is_flagged_100_percent(real):
    train, holdout = real
    memo = memorisation.check(train[:50], train, holdout)
    assert memo.flagged.all()
    assert memo.summary()["flagged_share"] == 1.0
    assert np.array_equal(memo.neighbour, np.arange(50))
    assert memo.distance.max() < 1e-6
    assert memo.threshold > 0.5  # different smoothed fields are far apart


@pytest.mark.parametrize("size,shift", [(28, 2), (64, 4), (64, 2)])
def test_shifted_copies_are_still_flagged(real, size, shift):
    train = scans(60, size=size, seed=3)
    holdout = scans(20, size=size, seed=4)
    copies = np.concatenate([shifted(train[:10], shift, -shift), shifted(train[10:20], -shift, 0)])
    memo = memorisation.check(copies, train, holdout)
    assert memo.flagged.all(), memo.distance
    assert np.array_equal(memo.neighbour, np.arange(20))
    # The brightness and contrast a GAN may change do not hide a copy either.
    memo = memorisation.check(0.5 * train[:10] + 0.2, train, holdout)
    assert memo.flagged.all()


def test_noise_is_flagged_0_percent_and_has_high_swd(real):
    train, holdout = real
    noise = np.random.default_rng(5).uniform(-1, 1, (80, 28, 28, 1)).astype(np.float32)
    memo = memorisation.check(noise, train, holdout)
    assert not memo.flagged.any()
    assert np.median(memo.distance) > np.median(memo.reference_distance)
    q = quality.quality(train, holdout, noise)
    assert q["images_per_set"] == 80 and q["holdout_images"] == 40  # k = min(train, generated)
    assert q["swd_generated_vs_train"] > 3 * q["swd_holdout_vs_train"]
    assert q["swd_generated_vs_holdout"] > 3 * q["swd_holdout_vs_train"]
    # A generator drawing new scans from the same distribution stays near the floor.
    fresh = quality.quality(train, holdout, scans(80, seed=6))
    assert fresh["swd_generated_vs_train"] < 2 * fresh["swd_holdout_vs_train"]


def test_a_collapsed_generator_has_a_low_diversity_ratio(real):
    train, holdout = real
    collapsed = np.repeat(scans(1, seed=7), 50, axis=0)
    assert quality.measure(train, holdout, collapsed)[1]["diversity_ratio"] < 0.2
    assert 0.7 < quality.measure(train, holdout, scans(50, seed=8))[1]["diversity_ratio"] < 1.3


def test_fresh_draws_are_flagged_about_as_often_as_chance_predicts(real):
    # The threshold is the closest of M real pairs, so an ideal generator (fresh draws from the
    # data distribution) has ~N/(M+1) images below it; the report says so.
    train, holdout = real
    summary = memorisation.check(scans(300, seed=14), train, holdout).summary()
    assert summary["expected_by_chance"] == 300 / 41
    assert 0 < summary["flagged"] < 4 * summary["expected_by_chance"]


def test_exact_copies_are_flagged_even_when_a_holdout_scan_duplicates_a_training_scan(real):
    train, holdout = real
    leaky = np.concatenate([holdout, train[:1]])  # the real floor becomes 0
    memo = memorisation.check(np.concatenate([train[5:8], scans(5, seed=9)]), train, leaky)
    assert memo.threshold < 1e-6
    assert memo.flagged.tolist() == [True] * 3 + [False] * 5


def test_bad_inputs_give_clear_errors(real):
    train, holdout = real
    with pytest.raises(UserError, match="NaN"):
        memorisation.check(np.full((2, 28, 28, 1), np.nan), train, holdout)
    with pytest.raises(UserError, match="sizes differ"):
        memorisation.check(scans(2, size=64), train, holdout)
    with pytest.raises(UserError, match="differ in shape"):
        evaluate.evaluate_arrays(train, holdout, scans(4, size=64))
    with pytest.raises(UserError, match="both covid"):
        evaluate.evaluate_arrays(train, holdout, scans(4), with_utility=True)


def test_auc_matches_known_values():
    assert classifier.auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert classifier.auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert classifier.auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert classifier.auc([1, 1], [0.1, 0.2]) is None


def _report(tmp_path, train, holdout, generated):
    results, memo = evaluate.evaluate_arrays(train, holdout, generated)
    results["run"] = RUN
    return report.write(tmp_path, results, memo, train=train, generated=generated), memo


def test_report_of_a_copying_generator(tmp_path, real):
    train, holdout = real
    noise = np.random.default_rng(10).uniform(-1, 1, (5, 28, 28, 1)).astype(np.float32)
    generated = np.concatenate([train[:45], noise])
    doc, memo = _report(tmp_path, train, holdout, generated)
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.strip().splitlines()[-1] == doc["verdict"]
    assert doc["verdict"].startswith("VERDICT: FAIL (quality, memorisation) | quality: ")
    assert "memorisation: 45 of 50 generated images are exact copies of training scans" in doc["verdict"]
    assert not doc["passed"]
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["verdict"] == doc["verdict"]
    assert on_disk["memorisation"]["flagged"] == 45
    assert len(on_disk["memorisation_rows"]) == 50
    assert sum(r["flagged"] for r in on_disk["memorisation_rows"]) == 45
    # Every flagged image is shown beside its neighbour: 45 pairs, 40 per page.
    assert doc["files"]["flagged_pairs"] == ["flagged_pairs_001.png", "flagged_pairs_002.png"]
    assert doc["files"]["closest_pairs"] == []
    with Image.open(tmp_path / "flagged_pairs_002.png") as page:
        assert page.height == 5 * 28 + 4 * images.GAP_PX  # the last 5 pairs
        assert page.width == report.PAIR_LABEL_PX + 2 * 28 + images.GAP_PX
        assert "synthetic" in page.text["Comment"] and "real training" in page.text["Comment"]
    for name in ["real_vs_synthetic.png", "samples.png", "memorisation_histogram.png"]:
        assert f"]({name})" in markdown
        with Image.open(tmp_path / name) as im:
            im.verify()
    with Image.open(tmp_path / "real_vs_synthetic.png") as im:
        assert im.size == (96 + 8 * 28 + 7 * images.GAP_PX, 2 * 28 + images.GAP_PX)
    assert images.read_tags(tmp_path / "samples.png")["synthetic"] == "true"


def test_report_of_a_novel_generator_says_no_memorisation(tmp_path, real):
    train, holdout = real
    noise = np.random.default_rng(11).uniform(-1, 1, (30, 28, 28, 1)).astype(np.float32)
    doc, _ = _report(tmp_path, train, holdout, noise)
    # Noise is new (nothing flagged) but nothing like a scan: quality fails, memorisation not.
    assert doc["verdict"].startswith("VERDICT: FAIL (quality) | quality: SWD")
    assert "memorisation: not detected (0 of 30 flagged" in doc["verdict"]
    assert doc["files"]["flagged_pairs"] == []
    assert doc["files"]["closest_pairs"] == ["closest_pairs_001.png"]
    markdown = (tmp_path / "report.md").read_text()
    assert "| train vs hold-out (floor) |" in markdown and "FID/KID: not computed" in markdown
    assert "| comparison | SWD x1e3 | intensity W1 | FID | KID |" in markdown
    assert "## By class\n\nNot evaluated: the generated images carry no class." in markdown
    assert [p["part"] for p in doc["verdict_parts"]] == ["quality", "diversity", "memorisation"]
    assert markdown.strip().splitlines()[-1] == doc["verdict"]
    with Image.open(tmp_path / "memorisation_histogram.png") as im:
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    colours = {tuple(c) for c in pixels}
    assert {report.HOLDOUT_COLOUR, report.GENERATED_COLOUR, report.THRESHOLD_COLOUR} <= colours


def test_nan_figures_are_null_in_json(tmp_path, real):
    train, holdout = real
    flat = np.zeros((10, 28, 28, 1), np.float32)
    results, memo = evaluate.evaluate_arrays(train, holdout, flat)
    results["run"] = RUN
    results["diversity"]["diversity_ratio"] = float("nan")  # e.g. a floor of 0 covered by 0
    report.write(tmp_path, results, memo, train=train, generated=flat)
    assert json.loads((tmp_path / "report.json").read_text())["diversity"]["diversity_ratio"] is None


def test_synthetic_tfds_dataset_round_trip(tmp_path):
    drawn = scans(7, seed=12)
    indices = np.array([0, 1, 2, 4, 5, 8, 9])  # 3, 6, 7 were dropped as copies
    covid_p = np.array([0.9, 0.1, 0.7, 0.2, 0.6, 0.4, 0.95])
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    export.write_pngs(pngs, drawn, indices, covid_p,
                      {"run": "runs/x", "epoch": "3", "source": "synthetic:runs/x@epoch3"})
    tags = images.read_tags(pngs / "synthetic_00004.png")
    assert tags["synthetic"] == "true" and tags["label"] == "non_covid"
    assert tags["covid_probability"] == "0.2000"
    data_dir = tmp_path / "tfds"
    export.build(pngs, str(data_dir), "28")
    # Loadable from the files alone, like the real dataset: no builder code needed.
    builder = tfds.builder_from_directory(str(data_dir / "covid_ct_synthetic" / "28" / "1.0.0"))
    assert builder.info.splits["train"].num_examples == 7
    assert "SYNTHETIC" in builder.info.description
    rows = sorted(tfds.as_numpy(builder.as_dataset(split="train")), key=lambda r: r["file_name"])
    assert [r["file_name"].decode() for r in rows] == [f"synthetic_{i:05d}.png" for i in indices]
    names = builder.info.features["label"].names
    assert [names[r["label"]] for r in rows] == [
        "covid" if p > 0.5 else "non_covid" for p in covid_p]
    assert all(r["source"] == b"synthetic:runs/x@epoch3" for r in rows)
    assert rows[0]["image"].shape == (28, 28, 1)
    assert np.array_equal(rows[0]["image"][..., 0], images.to_uint8(drawn[:1])[0])
    ds = tfds.load("covid_ct_synthetic/28", data_dir=str(data_dir), split="train")
    assert sum(1 for _ in ds) == 7


def test_synthetic_dataset_refuses_untagged_images(tmp_path):
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(pngs / "synthetic_00000.png")  # no tags
    with pytest.raises(UserError, match="not a labelled synthetic image"):
        export.build(pngs, str(tmp_path / "tfds"), "28")


def test_model_card_names_run_use_figures_and_failure_modes(real):
    train, holdout = real
    gen = scans(20, seed=13)
    info = {"run": "gs://b/runs/demo", "checkpoint": "best", "epoch": 30, "seed": 0, "config": "28",
            "data_dir": "data/tfds", "train": 120, "holdout": 40, "generated": 22, "kept": 20,
            "drop_copies": True, "covid_share": 0.4, "train_covid_share": 0.5,
            **dict(zip(("quality", "diversity"), quality.measure(train, holdout, gen))),
            "memorisation": memorisation.check(gen, train, holdout).summary()}
    card = export.model_card(info)
    for needle in ["gs://b/runs/demo", "epoch 30", "not diagnosis", "Not patient scans",
                   "2 near-copies of training scans dropped", "Known failure modes", "SWD x1e3"]:
        assert needle.lower() in card.lower(), needle


def separable(n, seed):
    """covid = a bright blob in the field, non_covid = none: a classifier should separate them."""
    x = scans(n, seed=seed) * 0.4
    covid = np.arange(n) % 2 == 0
    yy, xx = np.mgrid[:28, :28]
    rng = np.random.default_rng(seed)
    for i in np.flatnonzero(covid):
        cy, cx = rng.integers(8, 20, size=2)
        x[i, ..., 0] += 1.2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
    return np.clip(x, -1, 1), covid


@pytest.mark.heavy
def test_class_fidelity_and_utility_on_a_separable_case():
    train, train_covid = separable(160, seed=20)
    holdout, holdout_covid = separable(60, seed=21)
    generated, generated_covid = separable(40, seed=22)
    results, _ = evaluate.evaluate_arrays(train, holdout, generated[generated_covid],
                                          train_covid=train_covid, holdout_covid=holdout_covid,
                                          with_utility=True,
                                          utility_options=dict(seeds=2, ratios=(0.1,), steps=20))
    fidelity = results["class_fidelity"]
    assert fidelity["holdout_accuracy"] > 0.9 and fidelity["holdout_auc"] > 0.95
    assert fidelity["generated_covid_share"] > 0.9  # all generated images carry the blob
    assert fidelity["train_covid_share"] == 0.5
    # Images without a class of their own carry the probe's; the experiment's arms are there
    # (job/evaluation/utility.py and its tests measure them).
    assert results["utility_labels"] == "classifier"
    assert set(results["utility"]["arms"]) == {"real", "real+classical", "real+synthetic x0.1"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, demo_data):
    """A 2-epoch smoke run on the 28x28 demo phantoms (both labels, train and test splits)."""
    from job.training.loop import fit

    run = tmp_path_factory.mktemp("run")
    fit(smoke(demo_data, run))
    return str(run)


@pytest.mark.heavy
def test_evaluate_a_trained_run_into_a_bucket(smoke_run, gcs_prefix):
    doc = evaluate.evaluate(smoke_run, gcs_prefix, n=64)
    assert doc["run"]["epoch"] == 2 and doc["counts"]["generated"] == 64
    assert doc["class_fidelity"] is not None  # the demo phantoms hold both labels
    assert doc["by_class"]["note"].startswith("the run's generator is unconditional")
    assert doc["by_class"]["classes"] == {} and "| classes: " not in doc["verdict"]
    assert all(math.isfinite(doc["quality"][k]) for k in doc["quality"])
    files = storage.list_files(gcs_prefix)
    assert {"report.md", "report.json", "samples.png", "real_vs_synthetic.png",
            "memorisation_histogram.png"} <= set(files)
    markdown = storage.read_bytes(storage.join(gcs_prefix, "report.md")).decode()
    assert markdown.strip().endswith(doc["verdict"])


@pytest.mark.heavy
def test_generate_drop_copies_and_tfds_export_end_to_end(smoke_run, tmp_path):
    info = export.export(smoke_run, str(tmp_path / "out"), n=24, drop_copies=True,
                                    tfds_data_dir=str(tmp_path / "tfds"))
    kept = sorted((tmp_path / "out").glob("synthetic_*.png"))
    assert len(kept) == info["kept"] == 24 - info["memorisation"]["flagged"]
    assert (tmp_path / "out" / "MODEL_CARD.md").exists()
    assert (tmp_path / "tfds" / "covid_ct_synthetic" / "MODEL_CARD.md").exists()
    ds = tfds.load("covid_ct_synthetic/28", data_dir=str(tmp_path / "tfds"), split="train")
    assert sum(1 for _ in ds) == info["kept"]


def test_verdict_names_each_failing_part_with_its_reason():
    def results(swd=(40.0, 38.0), w1=(0.03, 0.02), diversity=0.9, flagged=3, p=0.6, exact=0):
        return {"quality": {"swd_generated_vs_holdout": swd[0], "swd_holdout_vs_train": swd[1],
                            "intensity_w1_generated_vs_holdout": w1[0],
                            "intensity_w1_holdout_vs_train": w1[1]},
                "diversity": {"diversity_ratio": diversity},
                "memorisation": {"generated": 1000, "flagged": flagged, "expected_by_chance": 11.8,
                                 "p_value": p, "alpha": 0.01, "exact_copies": exact,
                                 "memorisation": p < 0.01 or exact > 0}}

    good = verdict.verdict(verdict.judge(results()))
    assert good.startswith("VERDICT: PASS | quality: SWD 1.05x its real floor")
    assert "diversity: coverage 0.9 of the real scans'" in good and "memorisation: not detected" in good
    # The collapsed smoke run: SWD 204 against a floor of 40, diversity 0.105.
    collapsed = verdict.verdict(verdict.judge(results(swd=(204.0, 40.0), diversity=0.105)))
    assert collapsed.startswith("VERDICT: FAIL (quality, diversity) | quality: SWD 5.10x")
    assert "coverage 0.105 of the real scans'" in collapsed and "< 0.7: few poses" in collapsed
    dark = verdict.verdict(verdict.judge(results(w1=(0.22, 0.02))))
    assert dark.startswith("VERDICT: FAIL (quality) | quality: intensity W1 11.00x its real floor")
    copier = verdict.verdict(verdict.judge(results(flagged=400, p=1e-9)))
    assert "FAIL (memorisation)" in copier and "400 of 1000" in copier and "p = 1e-09 < 0.01" in copier


def _write_pngs(folder, batch):
    folder.mkdir()
    for i, x in enumerate(images.to_uint8(batch)):
        Image.fromarray(x).save(folder / f"img_{i:04d}.png")


def test_evaluate_images_of_a_collapsed_generator_says_collapse_and_exits_non_zero(
        tmp_path, demo_data, capsys):
    from job import cli

    one = scans(1, seed=30)
    noise = np.random.default_rng(31).normal(0, 0.01, (40, 28, 28, 1)).astype(np.float32)
    _write_pngs(tmp_path / "collapsed", np.clip(one + noise, -1, 1))
    code = cli.main(["evaluate", "--images", str(tmp_path / "collapsed"), "--data-dir", demo_data,
                     "--config", "28", "--out", str(tmp_path / "report")])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == VERDICT_FAIL_EXIT_CODE != 0
    assert line.startswith("VERDICT: FAIL (") and "diversity" in line.split("|")[0]
    assert "mode collapse" in line
    doc = json.loads((tmp_path / "report" / "report.json").read_text())
    assert doc["verdict"] == line and doc["passed"] is False
    assert doc["run"]["files"][0] == "img_0000.png"
    assert (tmp_path / "report" / "report.md").read_text().strip().endswith(line)


def test_evaluate_images_resizes_and_refuses_what_it_cannot_read(tmp_path, demo_data):
    from job import cli

    _write_pngs(tmp_path / "big", scans(6, size=64, seed=32))
    x, names, resized, labels = evaluate.read_images(str(tmp_path / "big"), 28, 28)
    assert x.shape == (6, 28, 28, 1) and resized == 6 and -1 <= x.min() and x.max() <= 1
    assert labels == [None] * 6  # untagged PNGs
    (tmp_path / "empty").mkdir()
    assert cli.main(["evaluate", "--images", str(tmp_path / "empty"), "--data-dir", demo_data,
                     "--config", "28", "--out", str(tmp_path / "r")]) == 2
    assert cli.main(["evaluate", "--images", str(tmp_path / "big"), "--out", str(tmp_path / "r")]) == 2
