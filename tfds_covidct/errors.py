"""The one error type of the dataset package.

A `DatasetError` is a whole-build problem a user can fix (no manual_dir, no recognisable source,
a malformed curation file). Problems with single files are never raised: they become recorded
skips in the audit. The `covidct` CLI prints the message alone and exits non-zero; this package
must not import `job`, so it has its own type.
"""


class DatasetError(Exception):
    """The build as a whole cannot go on; the message says why and what to do."""
