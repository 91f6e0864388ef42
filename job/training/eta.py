"""The progress line's ETA: measured only after the warm-up epochs, and saying so until then.

A process's first epochs pay for tracing the step, compiling it with XLA and filling the
dataset cache: the demo's first epoch took ~60x a later one, so an ETA from it said 1h18m for
a 6-minute run. The estimate is the wall time per epoch since the warm-up ended (metrics,
samples and checkpoints included), times the epochs left.
"""

from __future__ import annotations

import time

WARMUP_EPOCHS = 2  # the first traces the step; the second may still compile the metrics' graphs


class Eta:
    """`update(done)` after each epoch, then `text()` for the progress line."""

    def __init__(self, epochs: int, start_epoch: int, warmup: int = WARMUP_EPOCHS,
                 clock=time.monotonic):
        self.epochs, self.clock = epochs, clock
        self.warm_epoch = start_epoch + warmup  # the epoch after which timing starts
        self.warmup = warmup
        self.warm_time: float | None = None
        self.done = start_epoch

    def update(self, done: int) -> None:
        self.done = done
        if done == self.warm_epoch:
            self.warm_time = self.clock()

    def seconds(self) -> float | None:
        """Seconds left, or None while warming up (no epoch after the warm-up is timed yet)."""
        if self.warm_time is None or self.done <= self.warm_epoch:
            return None
        per_epoch = (self.clock() - self.warm_time) / (self.done - self.warm_epoch)
        return per_epoch * (self.epochs - self.done)

    def text(self) -> str:
        left = self.seconds()
        if left is None:
            if self.done >= self.epochs:
                return "ETA 0m00s"
            return f"ETA after {self.warmup} warm-up epochs (tracing, compiling)"
        return f"ETA {duration(left)}"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
