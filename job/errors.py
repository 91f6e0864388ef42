"""The one user-facing error type of the job.

Anything a user can fix (a bad config value, a missing dataset, an unreachable bucket) is raised as
`UserError`; the CLI prints its message alone and exits with `exit_code`, never a traceback.
"""


class UserError(Exception):
    """A problem the user can fix, with a message that says which one and how."""

    exit_code = 1


class ConfigError(UserError):
    """An invalid configuration value; always names the field."""

    exit_code = 2

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"config field '{field}': {message}")
