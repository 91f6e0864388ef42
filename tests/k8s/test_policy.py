"""The security and preemption policy on the real manifests, and on broken copies so a checker
that checks nothing fails; the pieces agree; the sweep cluster on a new GKE project.
"""

from __future__ import annotations

import copy
import re
import shlex

import pytest
import yaml

from tests.k8s.manifests import (ROOT, containers, dockerfile, dockerfile_env, load_documents,
                                  only, pod_specs, policy_violations, preemption_violations,
                                  parse, ray_cluster_pods, ray_job, run_config, sweep_arguments)


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
    for sweep_or_run in only("RayJob"):
        assert sweep_or_run["spec"]["rayClusterSpec"] == cluster["spec"], \
            f"RayJob {sweep_or_run['metadata']['name']}'s cluster drifted from raycluster.yaml"
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
    assert rayjob_violations(ray_job("sweep")) == []


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
    broken = copy.deepcopy(ray_job("sweep"))
    RAYJOB_BREAKAGES[breakage](broken)
    assert rayjob_violations(broken), f"{breakage} went unnoticed"


def long_run_violations(job: dict) -> list[str]:
    """How the N-node long run's RayJob would not start, not resume, or not fill its nodes."""
    from job.cli import config_from_args

    where, spec = f"RayJob/{job['metadata']['name']}", job["spec"]
    bad = []
    if spec.get("backoffLimit", 0) < 1:
        bad.append(f"{where}: backoffLimit {spec.get('backoffLimit', 0)}: one head eviction ends the run")
    argv = shlex.split(spec["entrypoint"])
    if argv[:2] != ["covidct", "train"]:
        return bad + [f"{where}: the entrypoint is not covidct train: {argv[:3]}"]
    args = parse(argv[1:], where)
    config = config_from_args(args, run_uri=args.run)
    data = run_config()
    if not (args.run or "").startswith("gs://"):
        bad.append(f"{where}: no gs:// --run: a retry on a new cluster could not resume the run")
    if (config.data_dir, config.dataset_config) != (data["DATA_DIR"], data["DATASET_CONFIG"]):
        bad.append(f"{where}: not the dataset the training Job prepared")
    (group,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    (worker,) = group["template"]["spec"]["containers"]
    gpus = int(worker["resources"]["limits"].get("nvidia.com/gpu", 0))
    if config.gpus_per_worker != gpus:
        bad.append(f"{where}: gpus_per_worker={config.gpus_per_worker}, a worker node has {gpus}")
    if config.cpus_per_worker > quantity(worker["resources"]["requests"]["cpu"]):
        bad.append(f"{where}: cpus_per_worker={config.cpus_per_worker} does not fit a worker pod")
    if config.num_workers != group["maxReplicas"]:
        bad.append(f"{where}: --num-workers {config.num_workers} is not the gpu group's "
                   f"{group['maxReplicas']} nodes (fewer leaves nodes idle, more never starts)")
    return bad


def test_the_long_run_rayjob_fills_the_gpu_group_and_resumes():
    assert long_run_violations(ray_job("long-run")) == []


def _set_entrypoint(job: dict, old: str, new: str) -> None:
    assert old in job["spec"]["entrypoint"]
    job["spec"]["entrypoint"] = job["spec"]["entrypoint"].replace(old, new)


LONG_RUN_BREAKAGES = {
    "no retries": lambda j: j["spec"].pop("backoffLimit"),
    "more workers than nodes": lambda j: _set_entrypoint(j, "--num-workers 4", "--num-workers 5"),
    "two GPUs per worker": lambda j: _set_entrypoint(j, "gpus_per_worker=1", "gpus_per_worker=2"),
    "too many CPUs": lambda j: _set_entrypoint(j, "cpus_per_worker=6", "cpus_per_worker=8"),
    "a local run": lambda j: _set_entrypoint(j, "--run gs://BUCKET_NAME/runs/", "--run runs/"),
    "another dataset": lambda j: _set_entrypoint(j, "--preset seed336x504", "--preset default"),
    "a sweep": lambda j: _set_entrypoint(j, "covidct train", "python -m tune"),
}


@pytest.mark.parametrize("breakage", sorted(LONG_RUN_BREAKAGES))
def test_long_run_checker_catches(breakage):
    broken = copy.deepcopy(ray_job("long-run"))
    LONG_RUN_BREAKAGES[breakage](broken)
    assert long_run_violations(broken), f"{breakage} went unnoticed"


def test_gke_allocatable_follows_the_documented_reservations():
    # GKE's tables: a 4-vCPU, 16 GiB node keeps 80m CPU and 2.6 GiB (+100 MiB eviction) for itself.
    cpu, memory = gke_allocatable("e2-standard-4")
    assert cpu + DAEMONSETS[0] == pytest.approx(3.92)
    assert memory + DAEMONSETS[1] == pytest.approx(16 - 2.6 - 100 / 1024)
