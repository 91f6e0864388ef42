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
import time

import numpy as np

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


# Near-duplicate recall on degraded copies (issue 15's leftover): a copy of every scan, cropped by
# 0-5% per side, rescaled 0.7-1.3x and saved as JPEG quality 75-95 (what public mirrors do).
def degraded_copy(gray, rng):
    """(H, W) uint8 -> the JPEG bytes of a re-cropped, rescaled, re-encoded copy, and its recipe."""
    import io

    from PIL import Image

    h, w = gray.shape
    cut = rng.uniform(0.0, 0.05, 4)  # left, top, right, bottom
    box = (int(cut[0] * w), int(cut[1] * h), w - int(cut[2] * w), h - int(cut[3] * h))
    scale = rng.uniform(0.7, 1.3)
    quality = int(rng.integers(75, 96))
    image = Image.fromarray(gray).crop(box)
    image = image.resize((max(8, round(image.width * scale)), max(8, round(image.height * scale))),
                         Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue(), f"crop {np.round(cut, 3).tolist()} scale {scale:.2f} q{quality}"


def dedupe_recall(folder: str, seed: int = 0, limit: int | None = None) -> dict:
    """Recall of near-duplicate detection on a degraded copy of every scan in `folder`, and how
    many distinct originals the copies made it merge (must stay what the originals alone give)."""
    import hashlib

    from tfds_covidct.covid_ct import cleaning, decode, dedupe

    def thumb(gray):
        x0, y0, x1, y1 = cleaning.trim_uniform_borders(gray)
        return dedupe.thumbnail(gray[y0:y1, x0:x1])

    rng = np.random.default_rng(seed)
    originals, copies = [], []
    for path in image_files(folder)[:limit]:
        data = path.read_bytes()
        try:
            gray = decode.decode(data).gray
        except decode.DecodeError:
            continue
        if cleaning.coarse_contrast(gray) < cleaning.MIN_COARSE_CONTRAST:
            continue
        name = str(path)
        originals.append(dedupe.Candidate(name, hashlib.sha256(data).hexdigest(), thumb(gray), gray.size))
        copy_bytes, recipe = degraded_copy(gray, rng)
        copy_gray = decode.decode(copy_bytes).gray
        copies.append((dedupe.Candidate(f"{name}#copy", hashlib.sha256(copy_bytes).hexdigest(),
                                        thumb(copy_gray), copy_gray.size), recipe))

    def family_of(candidates):
        keeper = dedupe.families(candidates, dedupe.find_duplicates(candidates))
        return keeper

    base = family_of(originals)
    t0 = time.perf_counter()
    both = family_of(originals + [c for c, _ in copies])
    seconds = time.perf_counter() - t0
    caught = [c for c, _ in copies if both[c.id] == both[c.id[:-len("#copy")]]]
    missed = [(c.id, recipe) for c, recipe in copies if c not in caught]
    # Originals that share a family with a different original, with and without the copies.
    def merged(families):
        members: dict[str, set] = {}
        for o in originals:
            members.setdefault(families[o.id], set()).add(o.id)
        return sum(len(m) for m in members.values() if len(m) > 1)
    scales = [float(r.split("scale ")[1].split()[0]) for _, r in copies]
    down = [c for (c, r), s in zip(copies, scales) if s < 1.0]
    return {
        "scans": len(originals),
        "recall": len(caught) / max(1, len(copies)),
        "recall_downscaled": sum(1 for c in down if c in caught) / max(1, len(down)),
        "recall_upscaled": (len(caught) - sum(1 for c in down if c in caught)) / max(1, len(copies) - len(down)),
        "originals_in_shared_families_alone": merged(base),
        "originals_in_shared_families_with_copies": merged(both),
        "dedupe_seconds": seconds,
        "missed_examples": missed[:5],
    }


if __name__ == "__main__":
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description="dataset source figures")
    parser.add_argument("--dedupe", metavar="DIR", nargs="?", const="",
                        help="near-duplicate recall on degraded copies of the scans in DIR "
                             f"(default ${FULL_ENV}, else ${SAMPLE_ENV})")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    if args.dedupe is None:
        parser.error("nothing to do: give --dedupe [DIR]")
    folder = args.dedupe or os.environ.get(FULL_ENV) or os.environ.get(SAMPLE_ENV)
    if not folder:
        parser.error(f"no folder: give one, or set {FULL_ENV} / {SAMPLE_ENV}")
    print(json.dumps(dedupe_recall(folder, limit=args.limit), indent=1))
    sys.exit(0)
