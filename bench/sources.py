"""Where the benchmark's scans come from: real ones named by environment variables, else the
demo phantoms. The real files are read in place, never copied (they may not enter the repo).

- COVIDCT_FULL_DIR: the full public set (~809 scans; the "750 real scans" of the prepare target);
  used by the full run.
- COVIDCT_SAMPLE_DIR: the 132-scan sample the tests use; used by --quick, and by the full run
  when the full set is absent.
- neither: the synthetic phantoms `covidct prepare --demo` builds (written to a scratch folder).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

FULL_ENV = "COVIDCT_FULL_DIR"
SAMPLE_ENV = "COVIDCT_SAMPLE_DIR"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str  # "full", "sample" or "demo"
    manual_dir: str  # a folder of scan files (for "demo": phantoms written by `materialise`)

    @property
    def real(self) -> bool:
        return self.kind != "demo"


def pick(quick: bool, scratch: pathlib.Path) -> Source:
    """The real scans the environment names (the full set unless --quick), else the phantoms."""
    order = [SAMPLE_ENV] if quick else [FULL_ENV, SAMPLE_ENV]
    for env in order:
        folder = os.environ.get(env)
        if folder and pathlib.Path(folder).is_dir():
            return Source("full" if env == FULL_ENV else "sample", folder)
    from tfds_covidct.build import demo_manual_dir

    return Source("demo", demo_manual_dir(str(scratch / "phantoms")))


def image_files(folder: str) -> list[pathlib.Path]:
    """Every scan file under `folder`, sorted (what a notebook would glob)."""
    return sorted(p for p in pathlib.Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# CT volumes for the "slices per second from volumes" row: phantom volumes (phantoms.volume_hu, in
# HU), half DICOM series and half gzipped NIfTI, both labels. 256x256 slices 2.5 mm apart (a
# typical low-dose chest CT has 512x512 slices 1-5 mm apart: this is ~1/4 of its pixels per slice).
VOLUME_DEPTH, VOLUME_SIDE, VOLUME_SPACING_MM, VOLUME_PIXEL_MM = 120, 256, 2.5, 1.4


def volume_manual_dir(folder: pathlib.Path, count: int, depth: int = VOLUME_DEPTH,
                      side: int = VOLUME_SIDE) -> tuple[str, int]:
    """Writes `count` phantom volumes into folder/{covid,non_covid}/; returns (manual_dir, the
    number of axial slices written)."""
    from tfds_covidct.covid_ct import phantoms

    folder = pathlib.Path(folder)
    slices = 0
    for i in range(count):
        label = ("covid", "non_covid")[i % 2]
        hu = phantoms.volume_hu(i, label, depth=depth, height=side, width=side)
        if (i // 2) % 2:
            phantoms.write_nifti(folder / label / f"volume_{i:03d}.nii.gz", hu,
                                 spacing_mm=VOLUME_SPACING_MM, pixel_mm=VOLUME_PIXEL_MM, axcodes="LPS")
        else:
            phantoms.write_dicom_series(folder / label / f"patient_{i:03d}", hu,
                                        spacing_mm=VOLUME_SPACING_MM, pixel_mm=VOLUME_PIXEL_MM,
                                        patient_id=f"BENCH-{i:03d}")
        slices += depth
    return str(folder), slices
