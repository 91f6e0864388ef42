"""The strategy factory: which process is the chief (TensorFlow's TF_CONFIG rule), and a
TF_CONFIG that does not name `num_workers` processes refused before anything trains."""

import json

import pytest

from job import config as C
from job.errors import ConfigError
from job.training import strategy


def tf_config(cluster, kind, index):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


@pytest.mark.parametrize("cluster, kind, index, workers, chief", [
    ({"worker": ["a:1", "b:1"]}, "worker", 0, 2, True),  # no chief task: worker 0 writes
    ({"worker": ["a:1", "b:1"]}, "worker", 1, 2, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, 2, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, 2, True),
    ({"chief": ["c:1"], "worker": ["a:1"], "ps": ["p:1"]}, "ps", 0, 2, False),
])
def test_the_chief_is_tensorflows(cluster, kind, index, workers, chief):
    role = strategy.role(tf_config(cluster, kind, index))
    assert (role.task_type, role.task_index, role.workers, role.is_chief) == (kind, index, workers, chief)


def test_one_process_without_tf_config_is_the_chief_of_one():
    assert strategy.role({}) == strategy.Role("chief", 0, 1, True)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        strategy.role({"TF_CONFIG": "{not json"})


def test_num_workers_must_match_the_tf_config_cluster(monkeypatch):
    config = C.resolve("smoke")
    monkeypatch.setenv("TF_CONFIG", tf_config({"worker": ["a:1", "b:1"]}, "worker", 0)["TF_CONFIG"])
    with pytest.raises(ConfigError, match="num_workers.*is 1 but TF_CONFIG names 2"):
        strategy.make_strategy(config)  # each worker would train alone and write the same run
    monkeypatch.setenv("TF_CONFIG", tf_config({"worker": ["a:1"]}, "worker", 0)["TF_CONFIG"])
    assert strategy.make_strategy(config).num_replicas_in_sync >= 1
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ConfigError, match="is 2 but TF_CONFIG names 1"):
        strategy.make_strategy(C.override(config, {"num_workers": 2}))
    with pytest.raises(ConfigError, match="one CPU replica per worker"):
        C.resolve("smoke", sets=["num_workers=2", "cpu_replicas=2"])
