"""The user-facing errors of the job and the exit-code contract.

Anything a user can fix (a bad config value, a missing dataset, an unreachable bucket) is raised as
a `UserError`; the CLI prints its message alone and exits with `exit_code`, never a traceback.
The contract, which `k8s/02-job.yaml`'s podFailurePolicy acts on:

    2    will fail again: a bad config, a changed run identity, a batch larger than the data,
         a divergence (a retry from the same checkpoint and seed would repeat it)
    143  preempted and safe: a checkpoint was saved; run the same command to resume
    1    may succeed on retry: a storage outage beyond the retry budget, a missing credential
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
