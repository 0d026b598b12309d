"""deploy/k8s without a cluster: every core object validated (strict: unknown fields rejected) against
the Kubernetes OpenAPI schemas shipped by kubernetes-validate, the KubeRay RayJob against the vendored
ray.io/v1 schema (deploy/k8s/schemas, whose pod templates refer to the same Kubernetes definitions), and
cross-references between the objects, the images and the CLI.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate as kv  # the dev extra
import pytest
import yaml
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
#: Kubernetes version validated against (KubeRay 1.x supports 1.23+).
K8S_VERSION = "1.31.0"
KUBERAY_ID = "https://marlids.invalid/schemas/kuberay-v1.schema.json"


def documents() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]


def kuberay_validator() -> jsonschema.Draft202012Validator:
    """The vendored ray.io/v1 schema with the strict Kubernetes definitions registered beside it."""
    from kubernetes_validate.utils import schema_contents

    defs = schema_contents(f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json", K8S_VERSION)
    schema = json.loads((K8S / "schemas" / "kuberay-v1.schema.json").read_text())
    registry = Registry().with_resources([(KUBERAY_ID, Resource.from_contents(schema)),
                                          (defs["$id"], Resource.from_contents(defs))])
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(doc: dict) -> None:
    """Raise a validation error if ``doc`` does not match its kind's schema."""
    if doc["apiVersion"].startswith("ray.io/"):
        kuberay_validator().validate(doc)
    else:
        kv.validate(doc, K8S_VERSION, strict=True)


def by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == kind}


def test_manifests_cover_cloud_postgres_fog_and_kuberay_training():
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in documents()}
    for expected in [("Deployment", "marlids-cloud"), ("Service", "marlids-cloud"), ("StatefulSet", "marlids-postgres"),
                     ("Service", "marlids-postgres"), ("Deployment", "marlids-fog"), ("Service", "marlids-fog"),
                     ("RayJob", "marlids-mappo")]:
        assert expected in kinds
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [p.name for p in MANIFESTS]


@pytest.mark.parametrize(("name", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_manifest_matches_its_schema(name, doc):
    validate(doc)
    assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "marlids"


@pytest.mark.parametrize(("path", "value"), [
    (("spec", "template", "spec", "containers"), "cloud"),                      # wrong type
    (("spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"), "http"),  # not an integer
    (("spec", "template", "spec", "containers", 0, "resourcez"), {}),           # unknown field in the pod
    (("spec", "replicaz"), 2),                                                  # unknown field (strict)
])
def test_core_schema_rejects_broken_objects(path, value):
    doc = json.loads(json.dumps(by_kind("Deployment")["marlids-cloud"]))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        kv.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("mutation", ["typo", "no_group_name", "pod_field", "submission_mode"])
def test_kuberay_schema_rejects_broken_rayjobs(mutation):
    doc = json.loads(json.dumps(by_kind("RayJob")["marlids-mappo"]))
    spec = doc["spec"]["rayClusterSpec"]
    if mutation == "typo":
        spec["workerGroupSpec"] = spec.pop("workerGroupSpecs")
    elif mutation == "no_group_name":
        del spec["workerGroupSpecs"][1]["groupName"]
    elif mutation == "pod_field":  # the pod template is checked with the Kubernetes definitions
        spec["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["gpus"] = 1
    else:
        doc["spec"]["submissionMode"] = "SSHMode"
    with pytest.raises(jsonschema.ValidationError):
        kuberay_validator().validate(doc)


def test_rayjob_has_a_gpu_worker_group_running_marlids_training():
    job = by_kind("RayJob")["marlids-mappo"]
    groups = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpu = [g for g in groups if any(c["resources"]["limits"].get("nvidia.com/gpu")
                                    for c in g["template"]["spec"]["containers"])]
    assert gpu and gpu[0]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert job["spec"]["rayClusterSpec"]["rayVersion"] in (REPO / "pyproject.toml").read_text()
    images = {c["image"] for g in [job["spec"]["rayClusterSpec"]["headGroupSpec"], *groups]
              for c in g["template"]["spec"]["containers"]}
    assert images == {"marlids-training:0.1.0"}
    # the entrypoint is a valid `marlids train mappo` command line asking for one GPU per learner
    args = shlex.split(job["spec"]["entrypoint"])
    assert args[:3] == ["marlids", "train", "mappo"] and args[args.index("--num-gpus-per-learner") + 1] == "1"
    r = subprocess.run([str(Path(sys.executable).parent / "marlids"), *args[1:], "--help"], check=False,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_services_select_their_pods_and_the_fog_reaches_the_cloud():
    deployments = {**by_kind("Deployment"), **by_kind("StatefulSet")}
    for name, svc in by_kind("Service").items():
        pods = deployments[name]["spec"]["template"]
        assert svc["spec"]["selector"].items() <= pods["metadata"]["labels"].items(), name
        ports = {p["name"] for c in pods["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports, name
    fog_args = deployments["marlids-fog"]["spec"]["template"]["spec"]["containers"][0]["args"]
    cloud = by_kind("Service")["marlids-cloud"]["spec"]["ports"][0]["port"]
    assert fog_args[fog_args.index("--cloud") + 1] == f"https://marlids-cloud:{cloud}"
    assert "@marlids-postgres:5432/" in (REPO / "docs" / "deploy.md").read_text()  # the database-url to create


def secret_refs(node) -> set[tuple[str, str | None]]:
    """``(secret, key)`` of every ``secretKeyRef`` and ``(secret, None)`` of every secret volume in ``node``."""
    out: set[tuple[str, str | None]] = set()
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            out.add((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
        if "secret" in node and "secretName" in node["secret"]:
            out.add((node["secret"]["secretName"], None))
        for v in node.values():
            out |= secret_refs(v)
    elif isinstance(node, list):
        for v in node:
            out |= secret_refs(v)
    return out


def test_every_secret_key_is_created_in_the_docs():
    docs = (REPO / "docs" / "deploy.md").read_text()
    refs = set().union(*(secret_refs(d) for _, d in documents()))
    assert {name for name, _ in refs} == {"marlids-secrets", "marlids-fog-tls", "marlids-cloud-tls"}
    for name, key in refs:
        assert f"kubectl -n marlids create secret generic {name}" in docs, name
        assert key is None or f"--from-literal={key}=" in docs, key


def test_pods_run_unprivileged():
    for kind in ("Deployment", "StatefulSet"):
        for name, d in by_kind(kind).items():
            pod = d["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            for c in pod["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], name


def test_tls_everywhere():
    """Issue 17: the cloud serves HTTPS only (probes too), the fog checks its certificate against the
    deployment CA and serves the edges with mutual TLS; no plaintext opt-out; certificate keys readable by
    the pod's group only."""
    cloud = by_kind("Deployment")["marlids-cloud"]["spec"]["template"]["spec"]
    c = cloud["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    secret = {v["name"]: v["secret"] for v in cloud["volumes"]}
    assert env["MARLIDS_CLOUD_TLS_CERT"] == mounts["tls"] + "/tls.crt" and env["MARLIDS_CLOUD_TLS_KEY"] == \
        mounts["tls"] + "/tls.key"
    assert secret["tls"]["secretName"] == "marlids-cloud-tls" and secret["tls"]["defaultMode"] == 0o440
    assert cloud["securityContext"]["fsGroup"] == 10001
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS", probe
    fog = by_kind("Deployment")["marlids-fog"]["spec"]["template"]["spec"]
    args = fog["containers"][0]["args"]
    mount = {m["name"]: m["mountPath"] for m in fog["containers"][0]["volumeMounts"]}["tls"]
    assert args[args.index("--cloud-ca") + 1] == mount + "/ca.crt" and args[args.index("--tls-ca") + 1] == mount + "/ca.crt"
    assert "--insecure" not in args and "--allow-plain-http" not in args
    assert {v["name"]: v for v in fog["volumes"]}["tls"]["secret"]["defaultMode"] == 0o440
