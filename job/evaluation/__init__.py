"""Evaluation of a generator or a folder of images: quality and diversity against the real floor
(the loop's `job.metrics.heldout` figures), class fidelity, memorisation, the utility experiment,
the report and its verdict (`verdict`)."""
