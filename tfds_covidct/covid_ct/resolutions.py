"""The builder configs: name -> image size (height, width), shared by the builder and the training job.

Two framings of every size: `<size>` crops the whole body slice (the 1.x configs), `<size>-lungs`
crops the lung field (anatomy.find_lungs: scanner text, table and arms left outside), the framing
many COVID-CT studies train on. `RESOLUTIONS` maps every config name, both framings, to (h, w).
"""

SIZES = {
    "28": (28, 28),
    "64": (64, 64),
    "128": (128, 128),
    "256": (256, 256),
    "336x504": (336, 504),
}
LUNGS_SUFFIX = "-lungs"

RESOLUTIONS = {**SIZES, **{f"{name}{LUNGS_SUFFIX}": size for name, size in SIZES.items()}}


def framing_of(config: str) -> str:
    """"lungs" for a `<size>-lungs` config, else "body"."""
    return "lungs" if config.endswith(LUNGS_SUFFIX) else "body"
