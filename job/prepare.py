"""`covidct prepare`: build the covid_ct dataset into a folder or a bucket.

    covidct prepare --demo --config 64 --data-dir data/tfds
    covidct prepare --manual-dir ~/covidct-download --config all --data-dir gs://BUCKET/tfds

The builder (`tfds_covidct`) knows nothing of buckets: it always builds into a local folder, which
`storage.staged_output` uploads for a gs:// data_dir (TensorFlow's own gs:// client cannot be
pointed at a test emulator). A gs:// manual_dir (the raw scans kept in a bucket, as the Kubernetes
job does) is used through `storage.local_copy`.
"""

from __future__ import annotations

import logging

from job import dataset_record, storage
from job.errors import UsageError, UserError
from job.storage.files import is_remote
from tfds_covidct import build as builder
from tfds_covidct.covid_ct.covid_ct_dataset_builder import Builder
from tfds_covidct.covid_ct.resolutions import RESOLUTIONS
from tfds_covidct.errors import DatasetError

log = logging.getLogger("covidct")


PREPARED = dataset_record.PREPARED


def is_prepared(config: str, data_dir: str) -> bool:
    """Whether covid_ct/<config> in `data_dir` is complete (its record was written last)."""
    return dataset_record.read(data_dir, config) is not None


def prepare(config: str, data_dir: str, manual_dir: str | None = None, demo: bool = False,
            if_missing: bool = False, labels_csv: str | None = None) -> list:
    """Build covid_ct/<config> (or every config for "all") into `data_dir`; returns the summaries.

    `labels_csv`: the labels of CT volumes in manual_dir (columns path,label[,patient]; see the
    covid_ct README); default `labels.csv` at the top of manual_dir."""
    configs = sorted(RESOLUTIONS) if config == "all" else [config]
    if any(c not in RESOLUTIONS for c in configs):
        raise UsageError(f"--config {config!r} is not one of {sorted(RESOLUTIONS)} or 'all'")
    if not demo and not manual_dir:
        raise UsageError("give --manual-dir DIR with the downloaded scans, or --demo for phantoms")
    # A bucket is checked with a listing, a local folder by writing a probe. The probe waits until
    # a build is really needed: `--if-missing` on a prepared read-only folder (a dataset volume
    # mounted read-only) is "nothing to do", never a failed write.
    if is_remote(data_dir):
        storage.check_reachable(data_dir)
    version = str(Builder.VERSION)
    wanted = {c: dataset_record.requested(c, manual_dir, demo, version, labels_csv)
              for c in configs}
    if if_missing:
        configs = [c for c in configs if _needs_build(c, data_dir, wanted[c])]
        if not configs:
            log.info(f"covid_ct/{config} is already prepared in {data_dir} from the same source: "
                     "nothing to do")
            return []
    if not is_remote(data_dir):
        storage.check_reachable(data_dir)
    local_manual = str(storage.local_copy(manual_dir)) if manual_dir else None
    summaries = []
    for c in configs:
        # A rebuilt config replaces the old one whole: stale shards of a larger build must not
        # survive beside the new ones, and the marker goes only after the upload.
        storage.delete(storage.join(data_dir, "covid_ct", c))
        with storage.staged_output(data_dir) as local_data_dir:
            try:
                summary = builder.build(c, str(local_data_dir), manual_dir=local_manual, demo=demo,
                                        labels_csv=labels_csv)
            except DatasetError as e:
                raise UserError(str(e)) from None
        log.info(summary.line())
        summaries.append(summary)
        dataset_record.write(data_dir, c, {**wanted[c], "kept": summary.kept,
                                           "splits": summary.splits})
    return summaries


def _needs_build(config: str, data_dir: str, wanted: dict) -> bool:
    """--if-missing: build unless the same source already built this config here."""
    recorded = dataset_record.read(data_dir, config)
    if recorded is None:
        return True
    changed = dataset_record.differences(recorded, wanted)
    if changed:
        log.info(f"covid_ct/{config} in {data_dir} was built from something else "
                 f"({'; '.join(changed)}): rebuilding")
    return bool(changed)
