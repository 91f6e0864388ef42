"""The PNG tag contract of synthetic images: what marks a file as GAN-drawn, and its class.

Every generated image the project writes carries PNG text chunks saying it is synthetic, so it can
never pass for a patient scan; `covid_ct_synthetic` reads only files that carry them. The contract
lives beside the dataset that depends on it; `job.images.save_png` writes it.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

from PIL import Image, PngImagePlugin

from tfds_covidct.covid_ct.sources.labels import LABELS  # the real covid_ct classes, one list
from tfds_covidct.errors import DatasetError

GENERATOR_NAME = "covidct-gan"
# Always written and never overridable. "Comment" is a standard PNG keyword many viewers show.
REQUIRED_TAGS = {
    "synthetic": "true",
    "generator": GENERATOR_NAME,
    "Comment": "Synthetic image drawn by a GAN (covidct-gan); not a patient scan.",
}


def png_info(tags: Mapping[str, Any]) -> PngImagePlugin.PngInfo:
    """PNG text chunks: `tags` (e.g. run, epoch, label) plus the required synthetic marks.

    Raises:
        DatasetError: a tag tries to change a required mark (never silently ignored).
    """
    info = PngImagePlugin.PngInfo()
    for key, value in tags.items():
        if key in REQUIRED_TAGS and str(value) != REQUIRED_TAGS[key]:
            raise DatasetError(f"PNG tag {key!r} is fixed to {REQUIRED_TAGS[key]!r}, got {value!r}")
        if key not in REQUIRED_TAGS:
            info.add_text(str(key), str(value))
    for key, value in REQUIRED_TAGS.items():
        info.add_text(key, value)
    return info


def read_tags(path: str | pathlib.Path) -> dict[str, str]:
    """The PNG text chunks of `path`.

    Raises:
        DatasetError: no such file.
    """
    try:
        with Image.open(path) as im:
            im.load()  # text chunks after the image data are read only when the data is
            return dict(getattr(im, "text", {}))
    except FileNotFoundError:
        raise DatasetError(f"no such image: {path}") from None


def synthetic_label(tags: Mapping[str, str]) -> str | None:
    """The class of a labelled synthetic image, or None when `tags` lack the synthetic marks or a label."""
    if any(tags.get(k) != v for k, v in REQUIRED_TAGS.items()) or tags.get("label") not in LABELS:
        return None
    return tags["label"]
