"""requirements.lock (`make lock`) pins every package of the image, and agrees with pyproject.toml.

The Dockerfile installs with `-c requirements.lock` (tests/test_k8s.py checks that), so two builds
of one version install the same packages. A pin changed in pyproject.toml without `make lock`, or
a lock edited by hand, fails here.
"""

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def read_lock(text: str) -> dict[str, Version]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.lock: {line!r} is not name==version"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def lock_violations(lock: dict[str, Version], dependencies: list[str]) -> list[str]:
    """How the lock fails pyproject.toml's dependencies (the project's own, for this platform)."""
    bad = []
    for text in dependencies:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11"}):
            continue
        name = canonicalize_name(req.name)
        if name not in lock:
            bad.append(f"{name} is not in requirements.lock: run `make lock`")
        elif lock[name] not in req.specifier:
            bad.append(f"requirements.lock pins {name}=={lock[name]}, pyproject.toml wants {req.specifier}")
    return bad


def project_dependencies() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def test_the_lock_pins_every_dependency_as_pyproject_asks():
    lock = read_lock((ROOT / "requirements.lock").read_text())
    assert lock_violations(lock, project_dependencies()) == []
    # The CUDA wheels TensorFlow's and-cuda extra brings are pinned too (the image is for GPUs).
    assert any(name.startswith("nvidia-cudnn") for name in lock)


@pytest.mark.parametrize("breakage", ["stale tensorflow", "missing scipy"])
def test_the_lock_checker_catches(breakage):
    lock = read_lock((ROOT / "requirements.lock").read_text())
    if breakage == "stale tensorflow":
        lock["tensorflow"] = Version("2.20.0")
    else:
        lock.pop("scipy")
    assert lock_violations(lock, project_dependencies())
