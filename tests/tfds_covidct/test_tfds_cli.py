"""TFDS's own command line (not `covidct prepare`) builds `covid_ct` from the sample scans, and
`tfds.load` reads the result: the convention researchers use, with the `tfds-cli` extra
(`pip install -e '.[tfds-cli]'`: apache-beam and mlcroissant, which `tfds` imports at start-up).
The `test` extra includes it, so the suite always runs this test."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.heavy
def test_tfds_build_cli_then_tfds_load(tmp_path):
    sample = os.environ.get("COVIDCT_SAMPLE_DIR")
    if not sample:
        pytest.skip("COVIDCT_SAMPLE_DIR (a folder of real COVID-CT scans) is not set")
    tfds_cli = pathlib.Path(sys.executable).parent / "tfds"
    done = subprocess.run([str(tfds_cli), "build", str(ROOT / "tfds_covidct" / "covid_ct"),
                           "--manual_dir", sample, "--data_dir", str(tmp_path), "--config", "28"],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    import tensorflow_datasets as tfds

    from tfds_covidct.covid_ct import covid_ct_dataset_builder  # noqa: F401  registers covid_ct

    train, info = tfds.load("covid_ct/28", data_dir=str(tmp_path), split="train", with_info=True)
    images = [example["image"].shape for example in train]
    assert images and all(shape == (28, 28, 1) for shape in images)
    assert info.splits["train"].num_examples == len(images)
    assert set(info.features["label"].names) == {"covid", "non_covid"}
