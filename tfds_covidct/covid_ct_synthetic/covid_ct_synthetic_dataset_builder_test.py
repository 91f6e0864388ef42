"""The TFDS harness on dummy_data/ (made by make_dummy_data.py): the 64 config builds from tagged
64x64 PNGs, the untagged file beside them is ignored."""

import tensorflow_datasets as tfds

from tfds_covidct.covid_ct_synthetic import covid_ct_synthetic_dataset_builder, make_dummy_data


class CovidCtSyntheticTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = covid_ct_synthetic_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = [make_dummy_data.CONFIG]
    SPLITS = {"train": 4}  # 2 covid + 2 non_covid tagged PNGs per config
    SKIP_CHECKSUMS = True  # manual download: no URL is fetched


if __name__ == "__main__":
    tfds.testing.test_main()
