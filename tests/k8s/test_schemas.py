"""Every document parses; core kinds validate strictly against Kubernetes' schemas, RayCluster
and RayJob against the KubeRay CRDs (`COVIDCT_K8S_SCHEMAS`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.k8s.manifests import (CRD_FILES, KUBERNETES_VERSION, SCHEMAS_VARIABLE, load_documents,
                                  only)


# ---------------------------------------------------------------------------------------------
# Tests: parsing and schemas


def test_every_document_parses_and_names_itself():
    documents = load_documents()
    assert {p for p, _ in documents} >= {"k8s/02-job.yaml", "k8s/ray/raycluster.yaml",
                                          "k8s/ray/rayjob/sweep.yaml", "k8s/ray/rayjob/long-run.yaml"}
    for path, doc in documents:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: apiVersion or kind missing"
        assert doc.get("metadata", {}).get("name"), f"{path}: {doc['kind']} has no name"
    kinds = sorted(doc["kind"] for _, doc in documents)
    assert kinds == ["ConfigMap", "Job", "RayCluster", "RayJob", "RayJob", "ServiceAccount", "ServiceAccount"]


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


