"""Session-wide set-up shared by every test.

TensorFlow's logical devices can be set only before TF initialises, so the CPU is split into two
logical devices here, once, before any test touches TF: every test can then build a real
2-replica MirroredStrategy (and a 1-replica one on /cpu:0) in the same process.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from job.training.devices import configure_cpu_replicas  # noqa: E402

configure_cpu_replicas(2)

pytest_plugins = ["tests.gcs_fixture"]


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """`covidct prepare --demo --config 28` once per session, into a folder every test (and every
    Ray or training subprocess) may read; tests never write into it."""
    from job.prepare import prepare

    folder = tmp_path_factory.mktemp("demo-tfds")
    prepare("28", str(folder), demo=True)
    return str(folder)


@pytest.fixture(scope="session")
def sample28(tmp_path_factory):
    """The real COVID-CT sample (COVIDCT_SAMPLE_DIR) prepared at 28x28 once per session: its
    data_dir, read-only for tests; skipped without the sample."""
    sample = os.environ.get("COVIDCT_SAMPLE_DIR")
    if not sample or not os.path.isdir(sample):
        pytest.skip("COVIDCT_SAMPLE_DIR (the real COVID-CT sample) is absent")
    from job.prepare import prepare

    folder = tmp_path_factory.mktemp("sample28-tfds")
    prepare("28", str(folder), manual_dir=sample)
    return str(folder)


# Modules outside tests/tune that start Ray (or a worker group of their own) share its worker.
RAY_MODULES = ("tests/job/training/test_multiworker.py",)

# The longest groups, longest first (seconds of the fresh clone's suite on 2 cores, 2026-12-07):
# started last, one of them would leave the other worker idle at the end (longest job first).
LONGEST_GROUPS = (
    # ~400. Its 1-vs-2-replica step test once failed after other modules in the same worker: a
    # thread they left behind drew from Python's `random`, which seeded Keras' initializers
    # (fixed: job.training.models.layers.weight_seed; test_step.py holds it).
    "tests/job/training/test_conditional.py",
    "tests/job/test_preemption.py",  # ~600: SIGTERM at chosen instants, each a resumed subprocess
    "ray",  # ~750: tests/tune's autoscaling clusters, sweeps, PBT; the Ray Train worker groups
    "tests/bench/test_bench.py",  # ~400: the quick bench, end to end
    "tests/job/training/test_train.py",  # ~250
)


# tryfirst: xdist's own hook (in each worker) turns the marks into the group, so they must be
# there before it runs. pyproject.toml keeps pytest below 9.2, where xdist 3.8's grouping works.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Groups for pytest-xdist's `--dist loadgroup` (`make test`): each test module runs whole in
    one worker, so a module fixture (a trained run, a Ray cluster) is built once; tests/tune's
    modules share one worker, as two autoscaling Ray clusters at once would starve each other's
    trials on a 2-core machine (`RAY_MODULES` join them). `LONGEST_GROUPS` go first. Without xdist the marks change
    nothing and only the order moves."""
    def group(item) -> str:
        module = item.nodeid.split("::")[0]
        return "ray" if module.startswith("tests/tune/") or module in RAY_MODULES else module

    rank = {name: i for i, name in enumerate(LONGEST_GROUPS)}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: rank.get(group(item), len(rank)))  # stable within a rank
