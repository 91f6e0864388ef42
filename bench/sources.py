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
