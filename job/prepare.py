"""`covidct prepare`: build the covid_ct dataset into a folder or a bucket.

    covidct prepare --demo --config 64 --data-dir data/tfds
    covidct prepare --manual-dir ~/covidct-download --config all --data-dir gs://BUCKET/tfds

The builder (`tfds_covidct`) knows nothing of buckets: it always builds into a local folder. For a
gs:// data_dir this module builds in scratch space and uploads through `job.storage` (TensorFlow's
own gs:// client cannot be pointed at a test emulator). A gs:// manual_dir (the raw scans kept in a
bucket, as the Kubernetes job does) is downloaded first.
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
import tempfile

from job import storage
from job.errors import UserError
from tfds_covidct import build as builder
from tfds_covidct.covid_ct.resolutions import RESOLUTIONS
from tfds_covidct.errors import DatasetError

log = logging.getLogger("covidct")


def _scratch(kind: str, uri: str) -> pathlib.Path:
    return pathlib.Path(tempfile.gettempdir()) / f"covidct-{kind}" / hashlib.sha256(uri.encode()).hexdigest()[:16]


PREPARED = "PREPARED"  # written after every file of a config is in place


def is_prepared(config: str, data_dir: str) -> bool:
    """Whether covid_ct/<config> in `data_dir` is complete: lets pod start-up skip a rebuild.

    Only the marker counts: an upload cut short by a preemption leaves files but no marker.
    """
    return storage.exists(storage.join(data_dir, "covid_ct", config, PREPARED))


def prepare(config: str, data_dir: str, manual_dir: str | None = None, demo: bool = False,
            if_missing: bool = False) -> list:
    """Build covid_ct/<config> (or every config for "all") into `data_dir`; returns the summaries."""
    configs = sorted(RESOLUTIONS) if config == "all" else [config]
    if any(c not in RESOLUTIONS for c in configs):
        raise UserError(f"--config {config!r} is not one of {sorted(RESOLUTIONS)} or 'all'")
    if not demo and not manual_dir:
        raise UserError("give --manual-dir DIR with the downloaded scans, or --demo for phantoms")
    storage.check_reachable(data_dir)
    if if_missing:
        configs = [c for c in configs if not is_prepared(c, data_dir)]
        if not configs:
            log.info(f"covid_ct/{config} is already prepared in {data_dir}: nothing to do")
            return []
    remote = storage.is_remote(data_dir)
    local_data = _scratch("prepare", data_dir) if remote else pathlib.Path(data_dir)
    if manual_dir and storage.is_remote(manual_dir):
        local_manual = _scratch("manual", manual_dir)
        storage.download_dir(manual_dir, str(local_manual))
        manual_dir = str(local_manual)
    summaries = []
    for c in configs:
        try:
            summary = builder.build(c, str(local_data), manual_dir=manual_dir, demo=demo)
        except DatasetError as e:
            raise UserError(str(e)) from None
        log.info(summary.line())
        summaries.append(summary)
    for c in configs:
        if remote:
            storage.upload_dir(str(local_data / "covid_ct" / c), storage.join(data_dir, "covid_ct", c))
            log.info(f"uploaded covid_ct/{c} to {data_dir}")
        storage.write_bytes(storage.join(data_dir, "covid_ct", c, PREPARED), b"")
    return summaries
