"""The k8s/ manifests and the Dockerfile as data, and the policy as functions that return what
is wrong (the tests in this folder run them on the real files and on broken copies).

The image and the Kubernetes manifests, checked as far as a machine without a cluster can.

No API server and no Docker engine run here, so this checks what can be checked offline: every
document parses; core kinds validate against Kubernetes' own schemas (kubernetes-validate, strict:
unknown fields fail) and RayCluster/RayJob against the KubeRay CRD schemas; every `covidct` and
`python -m tune` command line parses with the project's own parser and resolves to a valid
TrainConfig; pyproject.toml, the Dockerfile and the manifests name the same versions; and the
security policy holds. Every policy checker also runs on deliberately broken copies of the real
manifests, so a checker that checks nothing fails.
"""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from job.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# A current Kubernetes minor (GKE's regular channel at the time of writing) that
# kubernetes-validate ships schemas for.
KUBERNETES_VERSION = "1.35.0"
SCHEMAS_VARIABLE = "COVIDCT_K8S_SCHEMAS"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|CREDENTIAL)", re.I)
# A PEM private key, a service-account key file, an AWS access key id, a Google API key.
SECRET_VALUE = re.compile(
    r"(-----BEGIN [A-Z ]*PRIVATE KEY-----|\"private_key\"|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35})"
)
VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


# ---------------------------------------------------------------------------------------------
# Reading the files


def load_documents() -> list[tuple[str, dict]]:
    """(path relative to the repo, document) for every YAML document under k8s/."""
    out = []
    for path in sorted(K8S.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((str(path.relative_to(ROOT)), doc))
    return out


def only(kind: str, documents: list[tuple[str, dict]] | None = None) -> list[dict]:
    return [doc for _, doc in (documents or load_documents()) if doc["kind"] == kind]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned_versions() -> dict[str, tuple[str, frozenset[str]]]:
    """{canonical name: (version, extras)} of every `name==version` dependency in pyproject.toml."""
    pins = {}
    for line in pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            pins[canonicalize_name(req.name)] = (exact[0], frozenset(req.extras))
    return pins


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, out = "", []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            joined += line.rstrip()[:-1] + " "
            continue
        joined += line
        word, _, rest = joined.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        joined = ""
    return out


def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions((ROOT / "Dockerfile").read_text())


def dockerfile_args(instructions) -> dict[str, str]:
    args = {}
    for word, rest in instructions:
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip().strip('"')
    return args


def dockerfile_env(instructions) -> dict[str, str]:
    env = {}
    for word, rest in instructions:
        if word == "ENV":
            for token in shlex.split(rest):
                name, _, value = token.partition("=")
                env[name] = value
    return env


def pip_installs(instructions) -> list[list[str]]:
    """The arguments of every `pip install` in a RUN, with ${ARG}s substituted."""
    args = dockerfile_args(instructions)
    out = []
    for word, rest in instructions:
        if word != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            text = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), command)
            tokens = shlex.split(text)
            for i in range(len(tokens) - 1):
                if tokens[i].endswith("pip") and tokens[i + 1] == "install":
                    out.append(tokens[i + 2 :])
    return out


# ---------------------------------------------------------------------------------------------
# Walking the pods and containers of any manifest


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(where, pod spec) of every pod template in a Job, RayCluster or RayJob."""
    kind, spec = doc["kind"], doc.get("spec", {})
    name = doc["metadata"]["name"]
    if kind == "Job":
        return [(f"Job/{name}", spec["template"]["spec"])]
    if kind == "RayCluster":
        return ray_cluster_pods(f"RayCluster/{name}", spec)
    if kind == "RayJob":
        pods = ray_cluster_pods(f"RayJob/{name}", spec["rayClusterSpec"])
        if "submitterPodTemplate" in spec:
            pods.append((f"RayJob/{name}/submitter", spec["submitterPodTemplate"]["spec"]))
        return pods
    return []


def ray_cluster_pods(where: str, spec: dict) -> list[tuple[str, dict]]:
    pods = [(f"{where}/head", spec["headGroupSpec"]["template"]["spec"])]
    for group in spec.get("workerGroupSpecs", []):
        pods.append((f"{where}/{group['groupName']}", group["template"]["spec"]))
    return pods


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod.get("containers", [])


def checked_containers(doc: dict) -> list[tuple[str, dict, dict]]:
    """(where, pod spec, container) of every container, plus KubeRay's autoscaler sidecar.

    The sidecar is not written out in the manifest, but `autoscalerOptions` sets its resources and
    security context, and it runs in the head pod: it is held to the same rules.
    """
    out = []
    for where, pod in pod_specs(doc):
        out += [(f"{where}/{c['name']}", pod, c) for c in containers(pod)]
    cluster = doc["spec"].get("rayClusterSpec", doc["spec"]) if doc["kind"].startswith("Ray") else {}
    if cluster.get("enableInTreeAutoscaling"):
        head = cluster["headGroupSpec"]["template"]["spec"]
        sidecar = dict(cluster.get("autoscalerOptions", {}), name="autoscaler")
        out.append((f"{doc['kind']}/{doc['metadata']['name']}/head/autoscaler", head, sidecar))
    return out


# ---------------------------------------------------------------------------------------------
# The policy, as functions that return what is wrong (tested on good and bad documents below)


def container_violations(where: str, pod: dict, container: dict, image_env: dict) -> list[str]:
    bad = []
    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
        bad.append(f"{where}: runAsNonRoot is not true")
    if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
        bad.append(f"{where}: runs as uid 0")
    if sc.get("allowPrivilegeEscalation") is not False:
        bad.append(f"{where}: allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        bad.append(f"{where}: privileged")
    if sc.get("readOnlyRootFilesystem") is not True:
        bad.append(f"{where}: readOnlyRootFilesystem is not true")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        bad.append(f"{where}: capabilities are not all dropped")
    resources = container.get("resources", {})
    for part in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(part, {}):
                bad.append(f"{where}: no {resource} {part}")
    for resource, amount in resources.get("limits", {}).items():
        if "/" in resource and resources.get("requests", {}).get(resource) != amount:
            bad.append(f"{where}: {resource} requests differ from limits")
    for env in container.get("env", []):
        value = str(env.get("value", ""))
        if ("value" in env and SECRET_NAME.search(env["name"])) or SECRET_VALUE.search(value):
            bad.append(f"{where}: env {env['name']} holds a plaintext secret")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    tmpdir = next((e.get("value") for e in container.get("env", []) if e["name"] == "TMPDIR"),
                  image_env.get("TMPDIR", "/tmp"))
    if "emptyDir" not in volumes.get(mounts.get(tmpdir, ""), {}):
        bad.append(f"{where}: TMPDIR {tmpdir} is not a mounted emptyDir (the root is read-only)")
    return bad


def policy_violations(documents: list[tuple[str, dict]], image_env: dict) -> list[str]:
    """Every way in which `documents` break the project's security policy."""
    bad = []
    for path, doc in documents:
        if doc["kind"] == "Secret":
            bad.append(f"{path}: a Secret in the repository (use Workload Identity instead)")
        if doc["kind"] == "ConfigMap":
            for key, value in doc.get("data", {}).items():
                if SECRET_NAME.search(key) or SECRET_VALUE.search(str(value)):
                    bad.append(f"{path}: ConfigMap key {key} holds a plaintext secret")
        for where, pod in pod_specs(doc):
            for volume in pod.get("volumes", []):
                if "hostPath" in volume:
                    bad.append(f"{where}: hostPath volume {volume['name']}")
            if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
                bad.append(f"{where}: shares a host namespace")
        for where, pod, container in checked_containers(doc):
            bad += container_violations(where, pod, container, image_env)
    return bad


def preemption_violations(job: dict) -> list[str]:
    """How a Job would lose its run, or its retries, to preemptions."""
    name, spec = job["metadata"]["name"], job["spec"]
    pod = spec["template"]["spec"]
    bad = []
    rules = spec.get("podFailurePolicy", {}).get("rules", [])
    ignores = [
        i for i, rule in enumerate(rules)
        if rule.get("action") == "Ignore" and any(
            c.get("type") == "DisruptionTarget" and c.get("status", "True") == "True"
            for c in rule.get("onPodConditions", [])
        )
    ]
    if not ignores:
        bad.append(f"Job/{name}: no podFailurePolicy rule ignores the DisruptionTarget condition")
    elif any(rule.get("action") != "Ignore" for rule in rules[: ignores[0]]):
        bad.append(f"Job/{name}: a rule before the DisruptionTarget rule can count a preemption")
    # The exit-code contract (job/errors.py): 2 = will fail again, 143 = preempted and safe.
    by_code = {}
    for rule in rules:
        for code in rule.get("onExitCodes", {}).get("values", []):
            if rule["onExitCodes"].get("operator") == "In":
                by_code.setdefault(code, rule["action"])
    if by_code.get(2) != "FailJob":
        bad.append(f"Job/{name}: exit code 2 (will fail again) must fail the Job at once")
    if by_code.get(143) != "Ignore":
        bad.append(f"Job/{name}: exit code 143 (preempted, checkpoint saved) must not count")
    if by_code.get(1, "Count") != "Count":
        bad.append(f"Job/{name}: exit code 1 (may succeed on retry) must count against backoffLimit")
    if pod.get("restartPolicy") != "Never":
        bad.append(f"Job/{name}: restartPolicy must be Never for podFailurePolicy")
    if pod.get("terminationGracePeriodSeconds", 30) <= 30:
        bad.append(f"Job/{name}: terminationGracePeriodSeconds leaves no more than the default 30 s")
    return bad


# ---------------------------------------------------------------------------------------------
# Command lines


def expand(text: str, env: dict[str, str], where: str) -> str:
    """Kubernetes' $(VAR) expansion; an undefined variable would reach the program verbatim."""
    missing = [name for name in VARIABLE.findall(text) if name not in env]
    assert not missing, f"{where}: $({missing[0]}) is not defined in the container's env"
    return VARIABLE.sub(lambda m: env[m[1]], text)


def container_env(container: dict, config_maps: dict[str, dict], where: str) -> dict[str, str]:
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["configMapKeyRef"]
            data = config_maps.get(ref["name"])
            assert data is not None, f"{where}: ConfigMap {ref['name']} is not in k8s/"
            assert ref["key"] in data, f"{where}: ConfigMap {ref['name']} has no key {ref['key']}"
            env[item["name"]] = str(data[ref["key"]])
    return env


def job_command_lines() -> list[tuple[str, list[str]]]:
    """(container, argv) of every container of every Job, as the kubelet would run it."""
    documents = load_documents()
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in only("ConfigMap", documents)}
    entrypoint = next(yaml.safe_load(rest) for word, rest in dockerfile() if word == "ENTRYPOINT")
    out = []
    for job in only("Job", documents):
        for where, pod in pod_specs(job):
            for container in containers(pod):
                name = f"{where}/{container['name']}"
                env = container_env(container, config_maps, name)
                argv = container.get("command", entrypoint) + container.get("args", [])
                out.append((name, [expand(str(a), env, name) for a in argv]))
    return out


def ray_job(component: str) -> dict:
    """The one RayJob of `component` (its app.kubernetes.io/component label: sweep, long-run)."""
    (job,) = [j for j in only("RayJob") if j["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return job


def tune_command_lines() -> list[tuple[str, list[str]]]:
    """(RayJob, the arguments after `python -m tune`) of every sweep RayJob's entrypoint."""
    out = []
    for job in [ray_job("sweep")]:
        argv = shlex.split(job["spec"]["entrypoint"])
        assert argv[:3] == ["python", "-m", "tune"], f"RayJob entrypoint is not python -m tune: {argv}"
        out.append((f"RayJob/{job['metadata']['name']}", argv[3:]))
    return out


def parse(argv: list[str], where: str):
    """The project's own parser on `argv`; argparse's exit becomes a readable failure."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `covidct {shlex.join(argv)}` does not parse (see stderr)")


def run_config() -> dict[str, str]:
    (config_map,) = only("ConfigMap")
    return config_map["data"]


def sweep_arguments(argv: list[str], where: str):
    """`python -m tune ARGS` parsed as tune's own `main` parses them (= `covidct sweep ARGS`)."""
    from tune.cli import add_sweep_args

    parser = argparse.ArgumentParser(prog="python -m tune")
    add_sweep_args(parser)
    try:
        return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `python -m tune {shlex.join(argv)}` does not parse (see stderr)")
