"""A run trained by several worker processes (`num_workers` > 1): one writer, one state, one
decision per step.

Every worker runs the same `fit` (MultiWorkerMirroredStrategy needs each one in every collective),
so what must not differ between them is settled here:

- **One writer.** The chief (`strategy.role`) writes the run URI; every other worker writes its
  own scratch folder, which nothing reads and which is removed at the end (TensorFlow's
  multi-worker checkpointing advice: non-chief workers save to a temporary directory).
- **One state.** Only the chief restores the run's newest checkpoint; `adopt_chief_state` then
  gives every worker the chief's values of every variable, so the group trains one model even if
  a worker's disk or a bucket listing disagreed (what proves these are the same weights is the
  all-reduce, not a file name).
- **One decision.** A SIGTERM reaches the workers at different instants, and the wall-clock
  checkpoint timer runs per process: `Votes` all-reduces such flags at each step boundary, so all
  workers stop, or save, at the same step.
- **No hang.** A collective that waits past `collective_timeout_seconds` for a lost worker, or
  finds its peer gone, ends the worker with exit 1 (`GroupLost`): the launcher starts a new group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from typing import Iterator, Sequence

import tensorflow as tf

from job.config import TrainConfig, override
from job.errors import UserError
from job.training.strategy import Role

# What TensorFlow raises when a collective times out or its peer is gone.
COLLECTIVE_ERRORS = (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
                     tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError)


class GroupLost(UserError):
    """A worker of the group stopped answering (exit 1: the restarted group resumes)."""

    exit_code = 1


@contextlib.contextmanager
def writer_config(config: TrainConfig, role: Role) -> Iterator[TrainConfig]:
    """`config` for the chief; for any other worker, `config` writing a scratch folder (removed
    on exit), so only the chief writes the run URI."""
    if role.is_chief:
        yield config
        return
    scratch = tempfile.mkdtemp(prefix=f"covidct-worker{role.task_index}-")
    try:
        yield override(config, {"run_uri": scratch})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def adopt_chief_state(strategy: tf.distribute.Strategy, variables: Sequence[tf.Variable],
                      is_chief: bool) -> None:
    """Assign every worker the chief's values of `variables` (MirroredVariables of `strategy`):
    an all-reduce SUM in which every other worker contributes zeros.

    Raises:
        GroupLost (exit 1): a worker did not take part within the collective timeout.
    """
    chief = tf.constant(is_chief)

    @tf.function
    def chief_values():
        def replica_fn():
            context = tf.distribute.get_replica_context()
            return [context.all_reduce("SUM", tf.where(chief, v, tf.zeros_like(v))) for v in variables]
        return strategy.run(replica_fn)

    with Collectives("taking the chief's state"):
        values = chief_values()
    for variable, value in zip(variables, values):
        variable.assign(strategy.experimental_local_results(value)[0])


@dataclasses.dataclass
class Votes:
    """Flags every worker must agree on, all-reduced (a SUM: any worker's True counts)."""

    strategy: tf.distribute.Strategy

    def __post_init__(self):
        strategy = self.strategy

        @tf.function
        def any_true(flags):
            def replica_fn(local):
                # A copy on the replica's device: the host tensor has none to reduce to.
                return tf.distribute.get_replica_context().all_reduce("SUM", tf.identity(local))
            return strategy.run(replica_fn, args=(flags,))

        self._any_true = any_true

    def __call__(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag made True if it is True on any worker."""
        with Collectives("agreeing on a step boundary"):
            out = self._any_true(tf.constant([float(f) for f in flags]))
        return tuple(bool(v) for v in self.strategy.experimental_local_results(out)[0].numpy() > 0)


@dataclasses.dataclass(frozen=True)
class Collectives:
    """A reusable context turning a collective's timeout or lost peer into `GroupLost` (exit 1,
    naming what the group was doing)."""

    doing: str

    def __enter__(self) -> "Collectives":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is not None and issubclass(kind, COLLECTIVE_ERRORS):
            first = (str(error).strip().splitlines() or [kind.__name__])[0][:300]
            raise GroupLost(f"a worker of the group stopped answering while {self.doing} ({first}); "
                            "the restarted group resumes from the run's newest complete checkpoint"
                            ) from None
        return False
