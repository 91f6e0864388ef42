"""Session-wide set-up shared by every test.

TensorFlow's logical devices can be set only before TF initialises, so the CPU is split into two
logical devices here, once, before any test touches TF: every test can then build a real
2-replica MirroredStrategy (and a 1-replica one on /cpu:0) in the same process.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from job.training.devices import configure_cpu_replicas  # noqa: E402

configure_cpu_replicas(2)

pytest_plugins = ["tests.gcs_fixture"]
