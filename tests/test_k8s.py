"""The image and the Kubernetes manifests, checked as far as a machine without a cluster can.

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
import copy
import os
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from job import config as cfg
from job.cli import build_parser, config_from_args

ROOT = Path(__file__).resolve().parents[1]
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


def tune_command_lines() -> list[tuple[str, list[str]]]:
    """(RayJob, the arguments after `python -m tune`) of every RayJob entrypoint."""
    out = []
    for job in only("RayJob"):
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


def test_the_run_settings_are_pinned_for_the_jobs_lifetime():
    """A pod started after a preemption reads the settings the Job started with: the ConfigMap is
    immutable (the API server refuses edits), so editing RUN_URI or EPOCHS cannot switch a live
    Job to another run; new settings need a new ConfigMap name and a new Job."""
    (config_map,) = only("ConfigMap")
    assert config_map.get("immutable") is True
    (job,) = only("Job")
    names = {item["valueFrom"]["configMapKeyRef"]["name"]
             for _, pod in pod_specs(job) for c in containers(pod) for item in c.get("env", [])
             if "valueFrom" in item}
    assert names == {config_map["metadata"]["name"]}


# ---------------------------------------------------------------------------------------------
# Tests: parsing and schemas


def test_every_document_parses_and_names_itself():
    documents = load_documents()
    assert {p for p, _ in documents} >= {"k8s/02-job.yaml", "k8s/ray/raycluster.yaml",
                                          "k8s/ray/rayjob/sweep.yaml"}
    for path, doc in documents:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: apiVersion or kind missing"
        assert doc.get("metadata", {}).get("name"), f"{path}: {doc['kind']} has no name"
    kinds = sorted(doc["kind"] for _, doc in documents)
    assert kinds == ["ConfigMap", "Job", "RayCluster", "RayJob", "ServiceAccount", "ServiceAccount"]


def core_documents():
    return [(p, d) for p, d in load_documents() if not d["apiVersion"].startswith("ray.io/")]


@pytest.mark.parametrize("path,doc", core_documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_core_kinds_validate_strictly(path, doc):
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{path}: {doc['kind']} is invalid for Kubernetes {KUBERNETES_VERSION}: {e.message}")


def test_strict_validation_rejects_an_unknown_field():
    (job,) = only("Job")
    bad = copy.deepcopy(job)
    bad["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo of "resources"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def as_submitted(schema: dict) -> dict:
    """A CRD schema as the API server applies it to what `kubectl apply` sends.

    Fields with a default are filled in before validation, so they are not required of the
    manifest; and kubectl's strict field validation rejects unknown fields, which a structural
    schema would otherwise silently prune.
    """
    if not isinstance(schema, dict):
        return schema
    out = {k: as_submitted(v) if isinstance(v, dict) else v for k, v in schema.items()}
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [as_submitted(s) for s in out[key]]
    if "properties" in out:
        out["properties"] = {k: as_submitted(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        if "required" in out:
            out["required"] = [r for r in out["required"] if "default" not in out["properties"].get(r, {})]
    return out


@pytest.fixture(scope="module")
def crd_validators() -> dict[str, jsonschema.Draft4Validator]:
    folder = os.environ.get(SCHEMAS_VARIABLE)
    if not folder:
        reason = (f"{SCHEMAS_VARIABLE} is not set: it names the folder with the KubeRay CRDs "
                  "(.ci/run sets it to ../shared/k8s-schemas)")
        print(reason)
        pytest.skip(reason)
    validators = {}
    for kind, name in CRD_FILES.items():
        # libyaml's loader when PyYAML has it: the pure-Python one takes ~30 s for these 2 MB.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        crd = yaml.load((Path(folder) / name).read_text(), Loader=loader)
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        validators[kind] = jsonschema.Draft4Validator(as_submitted(version["schema"]["openAPIV3Schema"]))
    return validators


def crd_errors(validators, doc: dict) -> list[str]:
    assert doc["apiVersion"] == "ray.io/v1", f"{doc['kind']}: use the served, stored version ray.io/v1"
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validators[doc["kind"]].iter_errors(doc)]


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_kuberay_kinds_validate_against_the_crds(crd_validators, kind):
    documents = only(kind)
    assert documents, f"no {kind} under k8s/"
    for doc in documents:
        assert crd_errors(crd_validators, doc) == [], f"{kind}/{doc['metadata']['name']}"


def test_crd_validation_catches_typos_but_not_defaulted_fields(crd_validators):
    (cluster,) = only("RayCluster")
    defaulted = copy.deepcopy(cluster)
    del defaulted["spec"]["workerGroupSpecs"][0]["minReplicas"]  # required, but defaulted to 0
    assert crd_errors(crd_validators, defaulted) == []
    typo = copy.deepcopy(cluster)
    typo["spec"]["workerGroupSpecs"][0]["maxReplica"] = 4
    assert any("maxReplica" in e for e in crd_errors(crd_validators, typo))
    unnamed = copy.deepcopy(cluster)
    del unnamed["spec"]["workerGroupSpecs"][0]["groupName"]  # required, no default
    assert any("groupName" in e for e in crd_errors(crd_validators, unnamed))


# ---------------------------------------------------------------------------------------------
# Tests: command lines against the project's own parser (no drift between manifests and code)


def test_job_commands_parse_and_resolve_to_the_run_config():
    lines = dict(job_command_lines())
    data = run_config()
    assert all(argv[0] == "covidct" for argv in lines.values()), lines
    by_command = {}
    for where, argv in lines.items():
        args = parse(argv[1:], where)
        by_command.setdefault(args.command, []).append(args)
    assert sorted(by_command) == ["prepare", "train"], f"expected one prepare and one train: {lines}"
    (train,), (prepare,) = by_command["train"], by_command["prepare"]

    config = config_from_args(train, run_uri=train.run)
    assert isinstance(config, cfg.TrainConfig)
    assert config.name == "seed336x504" and data["PRESET"] == "seed336x504"
    assert config.epochs == 2250
    assert config.resolved_run_uri == data["RUN_URI"] and data["RUN_URI"].startswith("gs://")
    assert config.data_dir == data["DATA_DIR"] and config.dataset_config == data["DATASET_CONFIG"]
    assert cfg.validate(config, num_replicas=1) == config  # one GPU per pod

    # The init container prepares exactly what training reads, and only when it is not there.
    assert prepare.config == config.dataset_config
    assert prepare.data_dir == config.data_dir
    assert prepare.manual_dir == data["MANUAL_DIR"] and prepare.if_missing and not prepare.demo


def sweep_arguments(argv: list[str], where: str):
    """`python -m tune ARGS` parsed as tune's own `main` parses them (= `covidct sweep ARGS`)."""
    from tune.cli import add_sweep_args

    parser = argparse.ArgumentParser(prog="python -m tune")
    add_sweep_args(parser)
    try:
        return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `python -m tune {shlex.join(argv)}` does not parse (see stderr)")


def test_rayjob_sweep_parses_and_trains_on_the_prepared_dataset():
    data = run_config()
    lines = tune_command_lines()
    assert lines, "no RayJob entrypoint runs python -m tune"
    for where, argv in lines:
        from tune.cli import sweep_config  # config_from_args plus the sweep's own flags

        args = sweep_arguments(argv, where)
        config = sweep_config(args)
        assert isinstance(config, cfg.TrainConfig)
        assert config.dataset_config == data["DATASET_CONFIG"], "the sweep needs the data the Job prepared"
        assert config.data_dir == data["DATA_DIR"]
        assert cfg.validate(config, num_replicas=1) == config


def test_an_undefined_variable_in_args_is_caught():
    with pytest.raises(AssertionError, match="RUN_URL"):
        expand("--run=$(RUN_URL)", {"RUN_URI": "gs://b/r"}, "test")
    assert expand("epochs=$(EPOCHS)", {"EPOCHS": "2250"}, "test") == "epochs=2250"


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


# ---------------------------------------------------------------------------------------------
# Tests: policy, on the real manifests and on broken copies


def test_manifests_follow_the_security_policy():
    assert policy_violations(load_documents(), dockerfile_env(dockerfile())) == []


def test_the_job_survives_preemption_by_policy():
    (job,) = only("Job")
    assert preemption_violations(job) == []


def _container(doc):
    return doc["spec"]["template"]["spec"]["containers"][0]


def _pod(doc):
    return doc["spec"]["template"]["spec"]


BREAKAGES = {
    "root user": lambda d: _container(d).setdefault("securityContext", {}).update(runAsUser=0),
    "no runAsNonRoot": lambda d: _pod(d)["securityContext"].pop("runAsNonRoot"),
    "privilege escalation": lambda d: _container(d)["securityContext"].update(allowPrivilegeEscalation=True),
    "writable root": lambda d: _container(d)["securityContext"].pop("readOnlyRootFilesystem"),
    "no limits": lambda d: _container(d)["resources"].pop("limits"),
    "no memory request": lambda d: _container(d)["resources"]["requests"].pop("memory"),
    "gpu request differs": lambda d: _container(d)["resources"]["requests"].update({"nvidia.com/gpu": 0}),
    "hostPath": lambda d: _pod(d)["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
    "secret in env": lambda d: _container(d)["env"].append({"name": "GCS_API_KEY", "value": "abc123"}),
    "key in env": lambda d: _container(d)["env"].append(
        {"name": "GOOGLE_CREDS", "value": '{"private_key": "-----BEGIN PRIVATE KEY-----"}'}),
    "TMPDIR not mounted": lambda d: next(e for e in _container(d)["env"] if e["name"] == "TMPDIR").update(
        value="/var/tmp"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_policy_checker_catches(breakage):
    documents = load_documents()
    (index,) = [i for i, (_, d) in enumerate(documents) if d["kind"] == "Job"]
    path, job = documents[index]
    broken = copy.deepcopy(job)
    BREAKAGES[breakage](broken)
    documents[index] = (path, broken)
    assert policy_violations(documents, dockerfile_env(dockerfile())), f"{breakage} went unnoticed"


def test_policy_checker_catches_a_secret_document_and_the_autoscaler():
    documents = load_documents()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gcs-key"},
              "stringData": {"key.json": "{}"}}
    assert policy_violations(documents + [("k8s/secret.yaml", secret)], {"TMPDIR": "/tmp"})
    (cluster,) = [d for _, d in documents if d["kind"] == "RayCluster"]
    broken = copy.deepcopy(cluster)
    broken["spec"]["autoscalerOptions"].pop("securityContext")
    assert any("autoscaler" in v for v in policy_violations([("rc", broken)], {"TMPDIR": "/tmp"}))


PREEMPTION_BREAKAGES = {
    "no policy": lambda s: s.pop("podFailurePolicy"),
    "counts disruptions": lambda s: s["podFailurePolicy"]["rules"][0].update(action="Count"),
    "FailJob first": lambda s: s["podFailurePolicy"]["rules"].insert(
        0, {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [143]}}),
    "restarts in place": lambda s: s["template"]["spec"].update(restartPolicy="OnFailure"),
    "default grace": lambda s: s["template"]["spec"].pop("terminationGracePeriodSeconds"),
    "retries exit 2": lambda s: s["podFailurePolicy"]["rules"].pop(1),
    "ignores exit 1": lambda s: s["podFailurePolicy"]["rules"].append(
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}}),
}


@pytest.mark.parametrize("breakage", sorted(PREEMPTION_BREAKAGES))
def test_preemption_checker_catches(breakage):
    (job,) = only("Job")
    broken = copy.deepcopy(job)
    PREEMPTION_BREAKAGES[breakage](broken["spec"])
    assert preemption_violations(broken), f"{breakage} went unnoticed"


# ---------------------------------------------------------------------------------------------
# Tests: the pieces agree with each other


def test_one_image_one_bucket_one_identity():
    documents = load_documents()
    images = {c["image"] for _, d in documents for _, pod in pod_specs(d) for c in containers(pod)}
    assert len(images) == 1, f"every pod runs the same image: {sorted(images)}"
    texts = [yaml.safe_dump(d) for _, d in documents]
    buckets = {m for t in texts for m in re.findall(r"gs://([^/\s\"']+)", t)}
    assert len(buckets) == 1, f"one bucket for data, runs and sweeps: {sorted(buckets)}"
    accounts = [d for _, d in documents if d["kind"] == "ServiceAccount"]
    assert len(accounts) == 2 and accounts[0] == accounts[1], "k8s/ and k8s/ray/ define the same ServiceAccount"
    assert "iam.gke.io/gcp-service-account" in accounts[0]["metadata"]["annotations"]
    for _, doc in documents:
        for where, pod in pod_specs(doc):
            if not where.endswith("submitter"):
                assert pod.get("serviceAccountName") == accounts[0]["metadata"]["name"], where


def test_ray_pods_are_placed_like_the_job():
    (job,) = only("Job")
    (cluster,) = only("RayCluster")
    (ray_job,) = only("RayJob")
    assert ray_job["spec"]["rayClusterSpec"] == cluster["spec"], "the RayJob's cluster drifted from raycluster.yaml"
    job_pod = _pod(job)
    for group in cluster["spec"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        assert pod["nodeSelector"] == job_pod["nodeSelector"] and pod["tolerations"] == job_pod["tolerations"]
        assert group["minReplicas"] <= group["maxReplicas"] and group["maxReplicas"] >= 1
        (worker,) = pod["containers"]
        assert worker["resources"]["limits"].get("nvidia.com/gpu") == 1
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    assert "cloud.google.com/gke-accelerator" not in head.get("nodeSelector", {})
    assert not any("nvidia.com/gpu" in c["resources"].get("limits", {}) for c in head["containers"])
    terms = head["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    for term in terms:  # every term keeps the head off spot nodes
        assert {"key": "cloud.google.com/gke-spot", "operator": "DoesNotExist"} in term["matchExpressions"]
    ports = {p["name"]: p["containerPort"] for p in head["containers"][0]["ports"]}
    assert ports["dashboard"] == 8265
    for where, pod in ray_cluster_pods("RayCluster", cluster["spec"]):
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            shm = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
            assert shm and volumes[shm[0]["name"]]["emptyDir"].get("medium") == "Memory", where


# ---------------------------------------------------------------------------------------------
# Tests: the sweep cluster on a real GKE project (issue 17): authentication, retries, scale from
# zero, and a head that fits the node pool the README creates


# GKE machine types the README creates node pools of: (vCPUs, memory GiB).
MACHINES = {"e2-standard-4": (4, 16), "g2-standard-8": (8, 32)}
# Left on a node for GKE's own daemonsets (logging, metrics, kube-proxy, the GPU device plugin):
# a generous estimate, so "fits" means fits with room.
DAEMONSETS = (0.4, 1.0)  # CPU, GiB


def gke_allocatable(machine: str) -> tuple[float, float]:
    """(CPU, GiB) GKE leaves to pods on `machine`: its documented kube-reserved and eviction rules
    (cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes), less the daemonsets."""
    cpus, memory = MACHINES[machine]
    cpu_tiers = [(1, 0.06), (1, 0.01), (2, 0.005), (float("inf"), 0.0025)]
    memory_tiers = [(4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (float("inf"), 0.02)]

    def reserved(amount, tiers):
        out = 0.0
        for size, share in tiers:
            out += min(amount, size) * share
            amount = max(0.0, amount - size)
        return out

    return (cpus - reserved(cpus, cpu_tiers) - DAEMONSETS[0],
            memory - reserved(memory, memory_tiers) - 100 / 1024 - DAEMONSETS[1])


def quantity(value) -> float:
    """A Kubernetes CPU or memory quantity as cores or GiB."""
    text = str(value)
    units = {"m": 1e-3, "Mi": 1 / 1024, "Gi": 1.0}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def readme_pools() -> dict[str, str]:
    """{node pool: machine type} of every `gcloud container node-pools create` in the README."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    pools = {}
    for line in text.splitlines():
        if "node-pools create" in line:
            words = shlex.split(line.strip())
            name = words[words.index("create") + 1]
            pools[name] = words[words.index("--machine-type") + 1]
    return pools


def sweep_cluster_violations(cluster_spec: dict, where: str, entrypoint: list[str] | None,
                             pools: dict[str, str]) -> list[str]:
    """How a sweep cluster (a RayCluster's spec, or a RayJob's cluster and entrypoint) would fail
    on a real GKE project: open to any pod, unable to scale from zero, or unschedulable."""
    bad = []
    if cluster_spec.get("authOptions", {}).get("mode") != "token":
        bad.append(f"{where}: no token authentication (authOptions.mode: token)")
    head = cluster_spec["headGroupSpec"]
    if str(head["rayStartParams"].get("num-cpus")) != "0":
        bad.append(f"{where}: trials could land on the head (num-cpus is not 0)")
    # The head and the autoscaler sidecar fit the README's on-demand head pool.
    (container,) = head["template"]["spec"]["containers"]
    sidecar = cluster_spec.get("autoscalerOptions", {}).get("resources", {})
    cpu = quantity(container["resources"]["requests"]["cpu"]) + quantity(sidecar.get("requests", {}).get("cpu", 0))
    memory = (quantity(container["resources"]["requests"]["memory"])
              + quantity(sidecar.get("requests", {}).get("memory", 0)))
    limit = quantity(container["resources"]["limits"]["memory"]) + quantity(sidecar.get("limits", {}).get("memory", 0))
    if "sweep-head" not in pools:
        bad.append(f"{where}: the README creates no sweep-head node pool")
    else:
        free_cpu, free_memory = gke_allocatable(pools["sweep-head"])
        if cpu > free_cpu or max(memory, limit) > free_memory:
            bad.append(f"{where}: the head asks {cpu:g} CPU / {max(memory, limit):g} GiB, the "
                       f"{pools['sweep-head']} pool has {free_cpu:.2f} / {free_memory:.1f}")
    for group in cluster_spec["workerGroupSpecs"]:
        (worker,) = group["template"]["spec"]["containers"]
        free_cpu, free_memory = gke_allocatable(pools.get("gpu-spot", "g2-standard-8"))
        if (quantity(worker["resources"]["requests"]["cpu"]) > free_cpu
                or quantity(worker["resources"]["limits"]["memory"]) > free_memory):
            bad.append(f"{where}/{group['groupName']}: a worker does not fit the gpu-spot pool")
    if entrypoint is not None:
        args = sweep_arguments(entrypoint, where)
        if args.gpus_per_trial is None:
            bad.append(f"{where}: --gpus-per-trial not given (the cluster starts with no GPU to detect)")
        capacity = 0
        for group in cluster_spec["workerGroupSpecs"]:
            (worker,) = group["template"]["spec"]["containers"]
            gpus = int(worker["resources"]["limits"].get("nvidia.com/gpu", 0))
            cpus = quantity(worker["resources"]["limits"]["cpu"])
            per_worker = min(gpus // (args.gpus_per_trial or 1) if args.gpus_per_trial else cpus // args.cpus_per_trial,
                             cpus // args.cpus_per_trial)
            capacity += group["maxReplicas"] * int(per_worker)
        if args.max_concurrent_trials != capacity:
            bad.append(f"{where}: --max-concurrent-trials {args.max_concurrent_trials} is not what the "
                       f"worker groups can grow to ({capacity} trials)")
    return bad


def rayjob_violations(job: dict) -> list[str]:
    """How a RayJob would lose a sweep to one failure, or fail a sweep that finished."""
    where, spec = f"RayJob/{job['metadata']['name']}", job["spec"]
    bad = []
    if spec.get("backoffLimit", 0) < 1:
        bad.append(f"{where}: backoffLimit {spec.get('backoffLimit', 0)}: one head eviction fails the sweep")
    argv = shlex.split(spec["entrypoint"])[3:]
    if "--name" not in argv:  # (required by the parser too)
        return bad + [f"{where}: no --name, so a retry cannot resume the sweep"]
    return bad + sweep_cluster_violations(spec["rayClusterSpec"], where, argv, readme_pools())


def test_the_sweep_cluster_works_on_a_new_gke_project():
    (cluster,) = only("RayCluster")
    assert sweep_cluster_violations(cluster["spec"], "RayCluster", None, readme_pools()) == []
    (job,) = only("RayJob")
    assert rayjob_violations(job) == []


def _entrypoint_without(job: dict, flag: str, values: int = 1) -> None:
    argv = shlex.split(job["spec"]["entrypoint"])
    i = argv.index(flag)
    job["spec"]["entrypoint"] = shlex.join(argv[:i] + argv[i + 1 + values:])


RAYJOB_BREAKAGES = {
    "no retries": lambda j: j["spec"].pop("backoffLimit"),
    "no auth": lambda j: j["spec"]["rayClusterSpec"].pop("authOptions"),
    "auth disabled": lambda j: j["spec"]["rayClusterSpec"]["authOptions"].update(mode="disabled"),
    "the old 16Gi head": lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    ["containers"][0]["resources"]["limits"].update(memory="16Gi"),
    "concurrency off the groups": lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(maxReplicas=8),
    "no concurrency flag": lambda j: _entrypoint_without(j, "--max-concurrent-trials"),
    "gpus left to detection": lambda j: _entrypoint_without(j, "--gpus-per-trial"),
    "no name": lambda j: _entrypoint_without(j, "--name"),
}


@pytest.mark.parametrize("breakage", sorted(RAYJOB_BREAKAGES))
def test_rayjob_checker_catches(breakage):
    (job,) = only("RayJob")
    broken = copy.deepcopy(job)
    RAYJOB_BREAKAGES[breakage](broken)
    assert rayjob_violations(broken), f"{breakage} went unnoticed"


def test_gke_allocatable_follows_the_documented_reservations():
    # GKE's tables: a 4-vCPU, 16 GiB node keeps 80m CPU and 2.6 GiB (+100 MiB eviction) for itself.
    cpu, memory = gke_allocatable("e2-standard-4")
    assert cpu + DAEMONSETS[0] == pytest.approx(3.92)
    assert memory + DAEMONSETS[1] == pytest.approx(16 - 2.6 - 100 / 1024)
