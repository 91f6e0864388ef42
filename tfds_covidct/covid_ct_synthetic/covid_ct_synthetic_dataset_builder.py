"""covid_ct_synthetic: GAN-drawn CT slices, with the real covid_ct dataset's configs and features.

    covidct generate --run runs/demo --n 1000 --out out/synthetic --tfds data/tfds
    # then: tfds.load("covid_ct_synthetic/64", data_dir="data/tfds", split="train")

The manual_dir is a folder of `synthetic_*.png` files written by `covidct generate`; only files
whose PNG tags (`tags.py`) say synthetic and carry a label are read, so a real scan cannot slip in.
Seconds for a thousand images.
"""

from __future__ import annotations

import pathlib

import tensorflow_datasets as tfds

from tfds_covidct.covid_ct.resolutions import RESOLUTIONS
from tfds_covidct.covid_ct_synthetic import tags
from tfds_covidct.errors import DatasetError

NAME = "covid_ct_synthetic"


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for covid_ct_synthetic."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Synthetic slices exported by `covidct generate --tfds`."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name, description=f"{h}x{w} synthetic slices")
                       for name, (h, w) in RESOLUTIONS.items()]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "A folder of synthetic PNGs written by `covidct generate`."

    def _info(self) -> tfds.core.DatasetInfo:
        h, w = RESOLUTIONS[self.builder_config.name]
        return self.dataset_info_from_configs(
            description="SYNTHETIC CT slices drawn by a GAN (covidct-gan); not patient scans. "
                        "For augmentation research, not diagnosis. See MODEL_CARD.md.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(h, w, 1)),
                "label": tfds.features.ClassLabel(names=list(tags.LABELS)),
                "source": tfds.features.Text(),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(pathlib.Path(dl_manager.manual_dir))}

    def _generate_examples(self, folder: pathlib.Path):
        paths = sorted(folder.glob("synthetic_*.png"))
        if not paths:
            raise DatasetError(f"{folder}: no synthetic_*.png files to build {NAME} from")
        for path in paths:
            found = tags.read_tags(path)
            label = tags.synthetic_label(found)
            if label is None:
                raise DatasetError(
                    f"{path} is not a labelled synthetic image (its PNG tags say "
                    f"synthetic={found.get('synthetic')!r}, label={found.get('label')!r})")
            yield path.name, {"image": path, "label": label,
                              "source": found.get("source", "synthetic"), "file_name": path.name}


def build(png_dir: str | pathlib.Path, data_dir: str | pathlib.Path, config_name: str):
    """Build `covid_ct_synthetic/<config_name>` from `png_dir` into the local `data_dir`.

    Raises:
        DatasetError: an unknown config, no synthetic PNGs, or a PNG without the synthetic tags.
    """
    if config_name not in RESOLUTIONS:
        raise DatasetError(f"no {NAME} config {config_name!r}; one of {sorted(RESOLUTIONS)}")
    builder = Builder(config=config_name, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(png_dir)))
    return builder
