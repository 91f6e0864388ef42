"""Where a sweep's files live under its storage; shared by the trials, `best` and the report.

    <storage>/<sweep name>/                 the sweep: Ray's experiment state, report.md, report/
    <storage>/<sweep name>/<trial id>/      Ray's trial files and kept checkpoints
    <storage>/<sweep name>/<trial id>/run/  the job's run: config.json, metrics.jsonl, samples, ...
"""

from job import storage

RUN_FOLDER = "run"
REPORT = "report.md"
REPORT_IMAGES = "report"


def sweep_uri(storage_uri: str, name: str) -> str:
    return storage.join(storage_uri, name)


def trial_run_uri(sweep: str, trial_id: str) -> str:
    return storage.join(sweep, trial_id, RUN_FOLDER)
