"""Many training runs: Ray Tune sweeps around `job.training.loop.fit`, results and the best in a bucket.

`tune` imports `job`; `job` never imports `tune` or Ray. See tune/sweep.py for the command.
"""
