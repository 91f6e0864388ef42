"""What a trial tells Ray Tune: each measured epoch of its run, or a finished run's last one.

One trial process reports with `ray.tune.report`; every worker of a trial that is a Ray Train
run reports with `ray.train.report` (Train V2 takes one report from every worker, and
`TuneReportCallback` hands the chief's to Tune). Both go through `Reporter`, so a single-process
trial and a worker group report the same results at the same epochs.
"""

from __future__ import annotations

from typing import Callable

from job.metrics.registry import SELECTION_METRIC
from job.run import read_metrics
from job.training.loop import EpochReport

Send = Callable[..., None]  # ray.tune.report or ray.train.report: (metrics, checkpoint=...)


class Reporter:
    """A `fit` callback forwarding every epoch that measured the selection metric to `send`,
    with its checkpoint folder when `with_checkpoints` (PBT) and one was written.

    Epochs without a measurement are not reported: Tune requires the scheduler's metric in every
    result, and the sweep plan makes every checkpoint epoch a measured one.
    """

    def __init__(self, send: Send, with_checkpoints: bool = False):
        self.send, self.with_checkpoints = send, with_checkpoints
        self.epochs: list[int] = []  # every epoch `fit` trained in this process

    def __call__(self, report: EpochReport) -> None:
        from ray import tune

        self.epochs.append(report.epoch)
        if SELECTION_METRIC not in report.metrics:
            return
        checkpoint = None
        if self.with_checkpoints and report.checkpoint_dir is not None:  # complete at the run URI
            checkpoint = tune.Checkpoint.from_directory(report.checkpoint_dir)
        self.send({**report.metrics, "epoch": report.epoch}, checkpoint=checkpoint)

    def completed_run(self, run_uri: str) -> bool:
        """After `fit`: when it trained nothing (the run was complete), report the run's last
        measurement again; True when it did.

        Tune reruns a trial that had finished when the driver died before its state said so
        (`sweep.STATE_SYNC_SECONDS`): `fit` finds the run complete and trains nothing, and
        without this the trial would end with no result and the sweep would rank it last.
        """
        if self.epochs:
            return False
        measured = [m for m in read_metrics(run_uri) if SELECTION_METRIC in m]
        if measured:
            self.send(measured[-1])
        return bool(measured)
