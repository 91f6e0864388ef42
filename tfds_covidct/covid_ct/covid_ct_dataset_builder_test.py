"""The TFDS harness on dummy_data/ (made by make_dummy_data.py): every config builds, both splits
have the expected sizes, keys are content hashes (no local paths), nothing overlaps."""

import tensorflow_datasets as tfds

from tfds_covidct.covid_ct import covid_ct_dataset_builder
from tfds_covidct.covid_ct.resolutions import RESOLUTIONS


class CovidCtTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = covid_ct_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = list(RESOLUTIONS)
    # 16 phantoms (8 papers, 8 patients) + 1 exact copy + 1 zero-byte file: 16 kept; the split is
    # drawn per group (sha256 of the group key): paper:phantom-paper-0 is the one test group.
    SPLITS = {"train": 15, "test": 1}
    SKIP_CHECKSUMS = True  # manual download: no URL is fetched


if __name__ == "__main__":
    tfds.testing.test_main()
