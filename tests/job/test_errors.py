"""Every exception the job, the sweeps and the dataset raise survives pickle and copy (Ray and
worker pools do both to what they raise) with its message, attributes and exit code.

The classes are found by walking the `job`, `tune` and `tfds_covidct` packages, so a new one is
covered.
"""

import copy
import importlib
import inspect
import pickle
import pkgutil

import pytest

import job
import tfds_covidct
import tune
from job.errors import UserError


def _exception_classes() -> list[type]:
    found = {}
    for package in (job, tune, tfds_covidct):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module.name.endswith("__main__"):
                continue
            for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__.split(".")[0] in ("job", "tune", "tfds_covidct"):
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


def _example(cls: type) -> BaseException:
    """An instance built from its own `__init__`'s parameters: strings, or ints where annotated."""
    if cls.__init__ is Exception.__init__:
        return cls(f"{cls.__name__} happened")
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    values = [7 + i if p.annotation in (int, "int") else f"{p.name}-{i}" for i, p in enumerate(params)]
    return cls(*values)


CLASSES = _exception_classes()


def test_the_walk_finds_the_job_s_errors():
    names = {cls.__name__ for cls in CLASSES}
    assert {"UserError", "ConfigError", "Preempted", "Diverged", "StorageError", "PlanError",
            "DecodeError", "VolumeError", "DatasetError"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_an_error_survives_pickle_and_copy(cls):
    error = _example(cls)
    if isinstance(error, UserError):
        error.exit_code = 99  # set on the instance, as the sweep does for its last error
    for twin in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert type(twin) is cls
        assert str(twin) == str(error) and twin.args == error.args
        assert vars(twin) == vars(error)
        assert getattr(twin, "exit_code", None) == getattr(error, "exit_code", None)
