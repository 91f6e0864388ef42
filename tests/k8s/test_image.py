"""pyproject.toml, the Dockerfile and the manifests name the same versions; the image runs as a
non-root user and carries only the sources.
"""

from __future__ import annotations


import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.k8s.manifests import (ROOT, dockerfile, dockerfile_args, dockerfile_instructions,
                                  load_documents, only, pinned_versions, pip_installs, pod_specs,
                                  pyproject)


# ---------------------------------------------------------------------------------------------
# Tests: versions and the image


def test_ray_version_is_the_pinned_ray_everywhere():
    ray_pin, _ = pinned_versions()["ray"]
    docs = only("RayCluster") + only("RayJob")
    versions = [d["spec"]["rayVersion"] if d["kind"] == "RayCluster" else d["spec"]["rayClusterSpec"]["rayVersion"]
                for d in docs]
    assert versions and set(versions) == {ray_pin}
    assert dockerfile_args(dockerfile())["RAY_VERSION"] == ray_pin


def dockerfile_violations(text: str, pins: dict, scripts: dict) -> list[str]:
    """How a Dockerfile drifts from pyproject.toml or would run as root."""
    instructions = dockerfile_instructions(text)
    bad, installed, project_installs = [], {}, []
    copies = {rest.split()[-1].rstrip("/") for word, rest in instructions
              if word == "COPY" and "pyproject.toml" in rest.split()}
    for tokens in pip_installs(instructions):
        if "-e" in tokens or "--editable" in tokens:
            bad.append("an editable install: the image would depend on its build folder")
        constraints = {tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in ("-c", "--constraint")}
        if not any(c.endswith("requirements.lock") for c in constraints):
            bad.append(f"`pip install {' '.join(tokens)}` is not constrained by requirements.lock")
        for i, token in enumerate(tokens):
            if token.startswith("-") or token in constraints:
                continue
            if token in copies or token == ".":
                project_installs.append(token)
                continue
            req = Requirement(token)
            installed[canonicalize_name(req.name)] = req
    if not project_installs:
        bad.append("no `pip install` of the folder holding pyproject.toml")
    for name in ("tensorflow", "ray"):
        if name not in installed:
            bad.append(f"{name} is not installed with its pin")
    for name, req in installed.items():
        if name not in pins:
            bad.append(f"installs {name}, which pyproject.toml does not pin")
            continue
        version, extras = pins[name]
        if str(req.specifier) != f"=={version}":
            bad.append(f"{name}{req.specifier}, but pyproject.toml pins =={version}")
        if not extras <= set(req.extras):
            bad.append(f"{name} without the extras {sorted(extras - set(req.extras))}")
    users = [rest.split(":")[0] for word, rest in instructions if word == "USER"]
    if not users or not users[-1].isdigit() or int(users[-1]) == 0:
        bad.append("the last USER is not a numeric non-root uid (runAsNonRoot checks it)")
    entrypoints = [yaml.safe_load(rest) for word, rest in instructions if word == "ENTRYPOINT"]
    if not entrypoints or len(entrypoints[-1]) != 1 or entrypoints[-1][0] not in scripts:
        bad.append("the ENTRYPOINT is not the project's console script")
    return bad


def test_dockerfile_installs_the_pyproject_pins_as_a_non_root_user():
    text = (ROOT / "Dockerfile").read_text()
    scripts = pyproject()["project"]["scripts"]
    assert dockerfile_violations(text, pinned_versions(), scripts) == []
    assert dockerfile_args(dockerfile())["TENSORFLOW_VERSION"] == pinned_versions()["tensorflow"][0]
    (user,) = {rest.split(":")[0] for word, rest in dockerfile() if word == "USER"}
    pod_users = {pod.get("securityContext", {}).get("runAsUser")
                 for _, doc in load_documents() for _, pod in pod_specs(doc)}
    assert pod_users == {int(user)}, "the pods run as the image's user"


DOCKERFILE_BREAKAGES = {
    "another TensorFlow": ("ARG TENSORFLOW_VERSION=2.21.0", "ARG TENSORFLOW_VERSION=2.20.0"),
    "Ray without extras": ('"ray[default,train,tune]==${RAY_VERSION}"', '"ray==${RAY_VERSION}"'),
    "editable project": ("RUN pip install -c /src/requirements.lock /src", "RUN pip install -e /src"),
    "no project": ("RUN pip install -c /src/requirements.lock /src", "RUN true"),
    "unlocked project": ("RUN pip install -c /src/requirements.lock /src", "RUN pip install /src"),
    "root user": ("USER 1000:1000", "USER root"),
    "another entry point": ('ENTRYPOINT ["covidct"]', 'ENTRYPOINT ["python"]'),
}


@pytest.mark.parametrize("breakage", sorted(DOCKERFILE_BREAKAGES))
def test_dockerfile_checker_catches(breakage):
    text = (ROOT / "Dockerfile").read_text()
    old, new = DOCKERFILE_BREAKAGES[breakage]
    assert old in text, f"the Dockerfile changed: update the {breakage!r} case"
    scripts = pyproject()["project"]["scripts"]
    assert dockerfile_violations(text.replace(old, new), pinned_versions(), scripts), f"{breakage} went unnoticed"


def test_dockerignore_keeps_everything_but_the_sources_out():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "start from an empty context and allow what the build needs"
    allowed = {p[1:].strip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for word, rest in dockerfile():
        if word == "COPY" and not rest.startswith("--from"):
            sources |= {s.strip("/") for s in rest.split()[:-1]}
    assert allowed == sources, f"re-included {sorted(allowed)} but the Dockerfile copies {sorted(sources)}"
    assert all((ROOT / s).exists() for s in sources)
    assert not allowed & {"runs", "data", "out", "sweeps", ".venv", ".git", "tests", "k8s"}


