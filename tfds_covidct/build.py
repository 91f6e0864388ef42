"""The library entry point of the dataset: build covid_ct/<config> into a local folder.

    from tfds_covidct.build import build
    summary = build("64", "data/tfds", manual_dir="~/covidct-download")   # real scans
    summary = build("64", "data/tfds", demo=True)                          # synthetic phantoms

`covidct prepare` calls this; `tfds build tfds_covidct/covid_ct` reaches the same builder.
Whole-build problems raise `DatasetError`; bad single files are recorded skips in the audit.
A call always rebuilds: a demo build must never be mistaken later for real data (or the reverse).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import pathlib
import tempfile

from tfds_covidct.covid_ct import audit, phantoms, sources, volumes
from tfds_covidct.covid_ct.resolutions import RESOLUTIONS
from tfds_covidct.errors import DatasetError

log = logging.getLogger("tfds_covidct")


@dataclasses.dataclass(frozen=True)
class BuildSummary:
    """What a build produced: counts, where the dataset and its audit are."""

    dataset: str  # e.g. "covid_ct/64"
    dataset_dir: str  # <data_dir>/covid_ct/<config>/<version>
    synthetic: bool
    found: int
    kept: int
    duplicates: int
    rejected: int
    rejected_by_reason: dict[str, int]
    splits: dict[str, int]
    labels: dict[str, int]
    audit_csv: str
    audit_json: str
    contact_sheet: str
    build_log: str
    sources: dict[str, int] = dataclasses.field(default_factory=dict)  # kept scans per source
    volumes: dict[str, int] = dataclasses.field(default_factory=dict)  # audit.volume_counts

    def line(self) -> str:
        """One log line: what was built, where, and the counts."""
        reasons = ", ".join(f"{k} {v}" for k, v in self.rejected_by_reason.items())
        return (f"{self.dataset}{' SYNTHETIC DEMO' if self.synthetic else ''}: found {self.found}, "
                f"kept {self.kept} (train {self.splits.get('train', 0)}, test "
                f"{self.splits.get('test', 0)}), duplicates {self.duplicates}, rejected "
                f"{self.rejected}{f' ({reasons})' if reasons else ''}"
                + (f"; kept per source: {', '.join(f'{k} {v}' for k, v in self.sources.items())}"
                   if self.sources else "")
                + (f"; CT volumes {self.volumes['found']} ({self.volumes['used']} used) -> "
                   f"{self.volumes['slices_kept']} slices kept" if self.volumes.get("found") else "")
                + f" -> {self.dataset_dir}")


def demo_manual_dir(path: str, per_class: int = phantoms.DEFAULT_PER_CLASS) -> str:
    """Writes the deterministic synthetic phantoms into `path` (a manual_dir); returns `path`."""
    count = phantoms.write_phantoms(path, per_class=per_class)
    log.info("[SYNTHETIC DEMO] wrote %d synthetic phantoms to %s", count, path)
    return path


def build(config: str, data_dir: str, manual_dir: str | None = None, demo: bool = False,
          workers: int | None = None, labels_csv: str | None = None,
          volume_options: "volumes.Options | None" = None) -> BuildSummary:
    """Builds covid_ct/<config> into the local folder `data_dir`.

    Args:
      config: a builder config name (a key of RESOLUTIONS: "28", "64", "128", "256", "336x504",
        or the lung-field framing of each, "28-lungs" ... "336x504-lungs").
      data_dir: a local folder (TFDS layout: <data_dir>/covid_ct/<config>/<version>/).
      manual_dir: the folder with the downloaded scans (see the covid_ct README).
      demo: build from synthetic phantoms instead (no manual_dir).
      workers: decode/clean processes; default one per available CPU.
      labels_csv: labels of CT volumes (columns path,label[,patient]); default `labels.csv` at the
        top of manual_dir when there is one.
      volume_options: how slices are taken from CT volumes (`volumes.Options`: slices per volume,
        lung window, minimum gap); default `volumes.Options()`.

    Raises:
      DatasetError: a bad config, both or neither of manual_dir/demo, a gs:// data_dir, no
        recognisable source, or no scans left for a split.
    """
    if config not in RESOLUTIONS:
        raise DatasetError(f"config {config!r} is not one of {list(RESOLUTIONS)}")
    if demo and manual_dir:
        raise DatasetError("give either manual_dir (real scans) or demo (synthetic phantoms), not both")
    if "://" in data_dir:
        raise DatasetError(f"data_dir {data_dir!r} must be a local folder (upload it afterwards)")
    if demo:
        with tempfile.TemporaryDirectory(prefix="covid_ct_phantoms_") as scratch:
            return _build(config, data_dir, demo_manual_dir(scratch), workers)
    # Fail fast, with one clear message, before TensorFlow loads.
    sources.discover(manual_dir, labels_csv=labels_csv)
    return _build(config, data_dir, str(pathlib.Path(manual_dir).expanduser()), workers,
                  labels_csv, volume_options)


def _build(config: str, data_dir: str, manual_dir: str, workers: int | None,
           labels_csv: str | None = None, volume_options=None) -> BuildSummary:
    import tensorflow_datasets as tfds  # TensorFlow loads only when a build really starts

    from tfds_covidct.covid_ct import covid_ct_dataset_builder as module

    builder = module.Builder(config=config, data_dir=data_dir, workers=workers,
                             labels_csv=labels_csv, volume_options=volume_options)
    # TFDS prints "Downloading and preparing dataset Unknown size (download: Unknown size, ...)"
    # for a build that downloads nothing (manual_dir); its other printed lines are passed on.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir,
                # Rebuild every time: the same folder may have held a demo build.
                download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS,
                compute_stats=tfds.download.ComputeStatsMode.SKIP,
            ))
    finally:
        print("".join(line for line in printed.getvalue().splitlines(keepends=True)
                      if not line.startswith("Downloading and preparing dataset")), end="")
    dataset_dir = pathlib.Path(str(builder.data_dir))
    audit_dir = dataset_dir / module.AUDIT_DIR
    document = audit.read_summary(str(audit_dir / audit.JSON_NAME))
    s = document["summary"]
    summary = BuildSummary(
        dataset=document["dataset"], dataset_dir=str(dataset_dir), synthetic=document["synthetic"],
        found=s["found"], kept=s["kept"], duplicates=s["duplicates"], rejected=s["rejected"],
        rejected_by_reason=s["rejected_by_reason"], splits=s["splits"], labels=s["labels"],
        audit_csv=str(audit_dir / audit.CSV_NAME), audit_json=str(audit_dir / audit.JSON_NAME),
        contact_sheet=str(audit_dir / audit.SHEET_NAME), build_log=str(audit_dir / audit.LOG_NAME),
        sources=s.get("sources", {}), volumes=s.get("volumes", {}))
    log.info("%s", summary.line())
    return summary
