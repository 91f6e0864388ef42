"""What a prepared covid_ct build is made of: the record `covidct prepare` writes last.

    <data_dir>/covid_ct/<config>/PREPARED   {"source": "real_scans" | "demo_phantoms",
                                             "manual_dir": URI, "manual_dir_fingerprint": ...,
                                             "labels_csv_fingerprint": ... (volumes' labels),
                                             "builder_version": "2.0.0", "config": "64"}

The record is the build's identity and its completion marker (an upload cut short leaves files but
no record). `prepare --if-missing` rebuilds when the request differs from it (demo phantoms then
real scans, another curation of the scans, a new builder version), and training refuses demo
phantoms unless the config asks for them (`allow_synthetic_data`), so a long run can never train
on phantoms by accident.
"""

from __future__ import annotations

import json
import pathlib

from job import storage
from job.errors import ConfigError

DATASET = "covid_ct"
PREPARED = "PREPARED"
REAL, DEMO = "real_scans", "demo_phantoms"


def record_uri(data_dir: str, config: str) -> str:
    return storage.join(data_dir, DATASET, config, PREPARED)


def requested(config: str, manual_dir: str | None, demo: bool, builder_version: str,
              labels_csv: str | None = None) -> dict:
    """The record a build of `config` from this source would write.

    The scans are identified by `storage.fingerprint` (names, sizes, CRC32C of every file), the
    same for a folder and its copy in a bucket, without downloading a bucket's files.
    """
    return {
        "source": DEMO if demo else REAL,
        "manual_dir": "" if demo else manual_dir,
        "manual_dir_fingerprint": "" if demo else storage.fingerprint(manual_dir),
        "labels_csv_fingerprint": storage.fingerprint(labels_csv) if labels_csv else "",
        "builder_version": builder_version,
        "config": config,
    }


def read(data_dir: str, config: str) -> dict | None:
    """The record of covid_ct/<config> in `data_dir`, or None when it is not (completely) prepared.

    An empty record (written by versions before 2.0 of this module) reads as {}.
    """
    uri = record_uri(data_dir, config)
    if not storage.exists(uri):
        return None
    text = storage.read_bytes(uri).decode().strip()
    return json.loads(text) if text else {}


def write(data_dir: str, config: str, record: dict) -> None:
    storage.write_bytes(record_uri(data_dir, config), json.dumps(record, indent=1).encode())


def differences(recorded: dict, wanted: dict) -> list[str]:
    """What differs between two records, in words (empty: the same build)."""
    keys = ("source", "manual_dir_fingerprint", "labels_csv_fingerprint", "builder_version", "config")
    return [f"{k} {recorded.get(k, '')!r} -> {wanted[k]!r}" for k in keys
            if recorded.get(k, "") != wanted[k]]


def check_trainable(local_dataset_dir: pathlib.Path, config) -> None:
    """Refuse a build a run must not train on: unprepared, or demo phantoms not asked for.

    Args:
        local_dataset_dir: `<local data_dir>/covid_ct/<config>` (a verified local copy).
        config: the run's TrainConfig.

    Raises:
        ConfigError (exit 2): no PREPARED record, or demo phantoms without allow_synthetic_data.
    """
    path = local_dataset_dir / PREPARED
    if not path.is_file():
        raise ConfigError("data_dir", (
            f"{DATASET}/{config.dataset_config} in {config.data_dir!r} has no {PREPARED} record "
            f"(not built by covidct prepare, or its upload was cut short): run covidct prepare "
            f"--config {config.dataset_config} --data-dir {config.data_dir} --manual-dir DIR"))
    text = path.read_text().strip()
    record = json.loads(text) if text else {}
    if record.get("source") == DEMO and not config.allow_synthetic_data:
        raise ConfigError("allow_synthetic_data", (
            f"{config.data_dir!r} holds DEMO PHANTOMS ({DATASET}/{config.dataset_config} was built "
            "with covidct prepare --demo), and this run trains on real scans: rebuild it with "
            "--manual-dir DIR, or --set allow_synthetic_data=true for a demo"))
