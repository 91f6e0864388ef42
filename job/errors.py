"""The user-facing errors of the job and the exit-code contract.

Anything a user can fix (a bad config value, a missing dataset, an unreachable bucket) is raised as
a `UserError`; the CLI prints its message alone and exits with `exit_code`, never a traceback.
The contract, which `k8s/02-job.yaml`'s podFailurePolicy acts on:

    2    will fail again: a bad config, a changed run identity, a batch larger than the data,
         a divergence (a retry from the same checkpoint and seed would repeat it)
    143  preempted and safe: a checkpoint was saved; run the same command to resume
    1    may succeed on retry: a storage outage beyond the retry budget, a missing credential
    3    `covidct evaluate` only: the report was written and the generator failed its verdict
         (not an error: nothing to retry; `VERDICT_FAIL_EXIT_CODE`)
"""

VERDICT_FAIL_EXIT_CODE = 3


class UserError(Exception):
    """A problem the user can fix, with a message that says which one and how.

    Every subclass survives pickle and `copy` (Ray pickles what a trial raises, and copies it)
    with its message, attributes and exit code, whatever its `__init__` takes: the default
    (`cls(*args)`) would call `ConfigError(message)` and fail with a TypeError.
    """

    exit_code = 1

    def __reduce__(self):
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type, args: tuple, state: dict) -> UserError:
    """A `UserError` rebuilt from its args and attributes without calling its `__init__`."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(UserError):
    """An invalid configuration value; always names the field."""

    exit_code = 2

    def __init__(self, field: str, message: str):
        self.field = field
        # A flag (`--preset`, `--images`) is named as the user typed it, a field as a field.
        where = field if field.startswith("--") else f"config field '{field}'"
        super().__init__(f"{where}: {message}")


class UsageError(UserError):
    """A command given what it can never use (a folder that is not a run, a count below 1): the
    same command fails again, so exit 2 like argparse's own usage errors."""

    exit_code = 2


class Preempted(UserError):
    """SIGTERM: a checkpoint was saved; rerunning the same command resumes."""

    exit_code = 143  # 128 + SIGTERM: the pod fails (and is retried) rather than "succeeds"


class Diverged(UserError):
    """A non-finite loss: the run cannot go on from here (a retry from the same state repeats it).

    `epoch` is the epoch that diverged, `last_good_epoch` the newest checkpoint's; a sweep ends
    such a trial with the worst score instead of retrying it.
    """

    exit_code = 2

    def __init__(self, message: str, epoch: int, last_good_epoch: int):
        self.epoch = epoch
        self.last_good_epoch = last_good_epoch
        super().__init__(message)
