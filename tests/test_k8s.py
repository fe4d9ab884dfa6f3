"""KubeRay manifests (k8s/): every overlay renders (kubectl kustomize and the Python renderer agree), Ray resources
validate against strict KubeRay schemas, other objects against Kubernetes 1.32's, run configs fit the worker
groups they are pinned to, and security, network-policy, Dockerfile and dashboard lint rules hold. No cluster."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from visiong1.config import load_config, load_config_tree

ROOT = Path(__file__).parents[1]
K8S = ROOT / "k8s"
# The KubeRay release's CRD YAMLs (ray.io_rayclusters.yaml, ...) are not vendored: point KUBERAY_CRDS at them to
# check the strict schemas in k8s/schemas against them.
CRD_DIR = Path(os.environ.get("KUBERAY_CRDS", "/nonexistent"))
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
RENDERED = ["base", *OVERLAYS]
KUBECTL = shutil.which("kubectl")
ROLES = ("rollout", "learner", "reward")
RAY_KINDS = {"RayCluster", "RayJob"}
MONITOR_KINDS = {"ServiceMonitor", "PodMonitor"}
PROJECT_VERSION = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, K8S / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kustomize_lite = load_tool("kustomize_lite")
derive_strict_schemas = load_tool("derive_strict_schemas")
sync_run_configs = load_tool("sync_run_configs")


def directory(name: str) -> Path:
    return K8S / "base" if name == "base" else K8S / "overlays" / name


@cache
def _render(name: str) -> str:
    """YAML of a rendered overlay: kubectl kustomize where present (what `kubectl apply -k` sees), else the
    Python renderer (test_python_renderer_matches_kubectl shows they agree)."""
    if KUBECTL:
        return subprocess.run([KUBECTL, "kustomize", str(directory(name))], capture_output=True, text=True,
                              check=True).stdout
    return yaml.safe_dump_all(kustomize_lite.render(directory(name)))


def render(name: str) -> list[dict]:
    return list(yaml.safe_load_all(_render(name)))


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def cluster_specs(objects: list[dict]) -> list[dict]:
    """RayCluster specs, including the one each RayJob creates."""
    return ([obj["spec"] for obj in by_kind(objects, "RayCluster")]
            + [obj["spec"]["rayClusterSpec"] for obj in by_kind(objects, "RayJob")])


def pod_templates(objects: list[dict]) -> list[tuple[str, dict]]:
    """(where, pod template) for every pod the objects make."""
    templates = []
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in {"Deployment", "StatefulSet"}:
            templates.append((where, obj["spec"]["template"]))
        if obj["kind"] == "RayJob":
            templates.append((f"{where} submitter", obj["spec"]["submitterPodTemplate"]))
    for index, spec in enumerate(cluster_specs(objects)):
        templates.append((f"ray cluster {index} head", spec["headGroupSpec"]["template"]))
        templates += [(f"ray cluster {index} group {g['groupName']}", g["template"]) for g in spec["workerGroupSpecs"]]
    return templates


def containers(objects: list[dict]) -> list[tuple[str, dict, dict]]:
    """(where, container, pod spec) for every container, the KubeRay autoscaler sidecar included."""
    found = []
    for where, template in pod_templates(objects):
        pod = template["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            found.append((f"{where} container {container['name']}", container, pod))
    for index, spec in enumerate(cluster_specs(objects)):
        head_pod = spec["headGroupSpec"]["template"]["spec"]
        found.append((f"ray cluster {index} autoscaler", spec["autoscalerOptions"], head_pod))
    return found


def run_config(objects: list[dict]):
    (config_map,) = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "visiong1-run-config"]
    return load_config_tree(yaml.safe_load(config_map["data"]["run.yaml"]))


def quantity(value) -> float:
    """Kubernetes CPU or GPU quantity as a number ("500m" -> 0.5)."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


# --- rendering ---------------------------------------------------------------------------------------------------

@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed; the Python renderer is used alone")
@pytest.mark.parametrize("name", RENDERED)
def test_python_renderer_matches_kubectl(name):
    key = lambda obj: (obj["kind"], obj["metadata"]["name"])  # noqa: E731
    ours = {key(obj): obj for obj in kustomize_lite.render(directory(name))}
    theirs = {key(obj): obj for obj in render(name)}
    assert ours == theirs


def test_python_renderer_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(NotImplementedError, match="commonLabels"):
        kustomize_lite.render(tmp_path)


@pytest.mark.parametrize("name", RENDERED)
def test_every_overlay_renders_a_complete_deployment(name):
    kinds = {obj["kind"] for obj in render(name)}
    assert {"ConfigMap", "PersistentVolumeClaim", "NetworkPolicy", "PodMonitor"} <= kinds
    assert len(kinds & RAY_KINDS) == 1  # a long-lived RayCluster or a one-shot RayJob
    if "RayCluster" in kinds:
        assert {"Deployment", "Service", "StatefulSet", "ServiceMonitor", "Ingress"} <= kinds
    for obj in render(name):
        assert obj["metadata"].get("namespace") == (None if name == "base" else "visiong1"), obj["metadata"]


# --- Ray resources against the strict KubeRay schemas ------------------------------------------------------------

@cache
def strict_schema(kind: str) -> dict:
    return json.loads(derive_strict_schemas.schema_path(kind.lower()).read_text())


def schema_errors(obj: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(obj)]


@pytest.mark.skipif(not CRD_DIR.is_dir(), reason="KUBERAY_CRDS does not name a directory of KubeRay CRDs")
def test_committed_strict_schemas_are_derived_from_the_kuberay_crds():
    for kind, derived in derive_strict_schemas.derive(CRD_DIR).items():
        assert json.loads(derive_strict_schemas.schema_path(kind).read_text()) == derived, kind


@pytest.mark.parametrize("name", RENDERED)
def test_ray_resources_validate_against_strict_kuberay_schemas(name):
    ray_objects = [obj for obj in render(name) if obj["kind"] in RAY_KINDS]
    assert ray_objects
    for obj in ray_objects:
        assert obj["apiVersion"] == "ray.io/v1"
        assert schema_errors(obj, strict_schema(obj["kind"])) == [], obj["metadata"]["name"]


TYPOS = [  # (kind, path to a mapping, misspelt key)
    ("RayCluster", ("spec",), "enableInTreeAutoscalling"),
    ("RayCluster", ("spec", "workerGroupSpecs", 0), "maxReplica"),
    ("RayCluster", ("spec", "headGroupSpec", "template", "spec", "containers", 0), "imagePullPolicyy"),
    ("RayCluster", ("spec", "authOptions"), "secret"),
    ("RayJob", ("spec",), "entryPoint"),
    ("RayJob", ("spec", "rayClusterSpec", "workerGroupSpecs", 1), "minReplica"),
]


@pytest.mark.parametrize("kind,path,typo", TYPOS)
def test_a_misspelt_field_fails_the_strict_schema(kind, path, typo):
    (obj,) = by_kind(render("rayjob" if kind == "RayJob" else "paper-8gpu"), kind)
    node = obj
    for part in path:
        node = node[part]
    node[typo] = 1
    errors = schema_errors(obj, strict_schema(kind))
    assert len(errors) == 1 and typo in errors[0]
    if CRD_DIR.is_dir():  # the CRD's own schema lets the typo through: only the strict variant catches it
        crd = yaml.load((CRD_DIR / derive_strict_schemas.CRDS[kind.lower()]).read_text(), Loader=yaml.CSafeLoader)
        assert schema_errors(obj, derive_strict_schemas.storage_schema(crd)[1]) == []


def test_a_wrong_type_and_a_bad_enum_fail_the_strict_schema():
    (cluster,) = by_kind(render("paper-8gpu"), "RayCluster")
    cluster["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "four"
    cluster["spec"]["authOptions"]["mode"] = "password"
    assert len(schema_errors(cluster, strict_schema("RayCluster"))) == 2


# --- other objects against the Kubernetes schemas -----------------------------------------------------------------

def kubernetes_errors(obj: dict) -> list[str]:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -e .[dev]")
    try:
        kubernetes_validate.validate(obj, "1.32", strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'/'.join(map(str, error.path))}: {error.message}"]
    return []


@pytest.mark.parametrize("name", RENDERED)
def test_kubernetes_objects_validate_against_kubernetes_1_32(name):
    core = [obj for obj in render(name) if obj["kind"] not in RAY_KINDS | MONITOR_KINDS]
    assert core
    assert {f"{obj['kind']}/{obj['metadata']['name']}": kubernetes_errors(obj) for obj in core} == {
        f"{obj['kind']}/{obj['metadata']['name']}": [] for obj in core}


def test_kubernetes_validation_catches_a_misspelt_field():
    (api,) = [d for d in by_kind(render("paper-8gpu"), "Deployment") if d["metadata"]["name"] == "visiong1-api"]
    api["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert kubernetes_errors(api)


def monitor_problems(objects: list[dict]) -> list[str]:
    """Prometheus Operator objects (no schema offline): required fields, and every endpoint names a port that a
    selected Service or pod template declares."""
    problems = []
    service_ports = {(s["metadata"]["name"], p["name"]): s["metadata"].get("labels", {})
                     for s in by_kind(objects, "Service") for p in s["spec"]["ports"]}
    pod_ports = [(template["metadata"]["labels"], port["name"]) for _, template in pod_templates(objects)
                 for c in template["spec"]["containers"] for port in c.get("ports", [])]
    for monitor in (o for o in objects if o["kind"] in MONITOR_KINDS):
        name = monitor["metadata"]["name"]
        wanted = monitor["spec"].get("selector", {}).get("matchLabels")
        endpoints = monitor["spec"].get("endpoints" if monitor["kind"] == "ServiceMonitor" else "podMetricsEndpoints")
        if monitor["apiVersion"] != "monitoring.coreos.com/v1" or not wanted or not endpoints:
            problems.append(f"{name}: needs monitoring.coreos.com/v1, spec.selector.matchLabels and endpoints")
            continue
        selects = lambda labels: wanted.items() <= labels.items()  # noqa: E731
        for endpoint in endpoints:
            if monitor["kind"] == "ServiceMonitor":
                found = any(port == endpoint.get("port") and selects(labels)
                            for (_, port), labels in service_ports.items())
            else:
                found = any(port == endpoint.get("port") and selects(labels) for labels, port in pod_ports)
            if not found:
                problems.append(f"{name}: no selected object declares port {endpoint.get('port')!r}")
    return problems


@pytest.mark.parametrize("name", RENDERED)
def test_scrape_configs_point_at_declared_ports(name):
    assert monitor_problems(render(name)) == []


def test_scrape_config_check_sees_a_dangling_port():
    objects = render("paper-8gpu")
    (nodes,) = [m for m in by_kind(objects, "PodMonitor") if m["metadata"]["name"] == "visiong1-ray-nodes"]
    nodes["spec"]["podMetricsEndpoints"][0]["port"] = "metrics-typo"
    assert monitor_problems(objects) == ["visiong1-ray-nodes: no selected object declares port 'metrics-typo'"]


# --- security ----------------------------------------------------------------------------------------------------

def image_pinned(image: str) -> bool:
    """A digest, or a tag that names a version (has a digit) and is not `latest`."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(ch.isdigit() for ch in tag)


def security_problems(objects: list[dict]) -> list[str]:
    """Pods run as non-root without privilege escalation (the `restricted` Pod Security profile's core), with CPU
    and memory requests and limits, and images pinned by tag."""
    problems = []
    for where, container, pod in containers(objects):
        context, pod_context = container.get("securityContext", {}), pod.get("securityContext", {})
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(bound, {})):
                problems.append(f"{where}: {bound} must set cpu and memory")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot must be true")
        if 0 in (context.get("runAsUser"), pod_context.get("runAsUser")) or context.get("privileged"):
            problems.append(f"{where}: runs as root or privileged")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            problems.append(f"{where}: capabilities must drop ALL")
        if pod_context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile must be RuntimeDefault")
        if "image" in container and not image_pinned(container["image"]):
            problems.append(f"{where}: image {container['image']} is not pinned by tag")
    for where, template in pod_templates(objects):
        pod = template["spec"]
        if pod.get("hostNetwork") or pod.get("hostPID") or any("hostPath" in v for v in pod.get("volumes", [])):
            problems.append(f"{where}: host namespaces or hostPath volumes")
    return problems


@pytest.mark.parametrize("name", RENDERED)
def test_pods_are_unprivileged_bounded_and_pinned(name):
    assert security_problems(render(name)) == []


@pytest.mark.parametrize("mutation,expected", [
    (lambda c, p: c["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    (lambda c, p: (c["securityContext"].pop("runAsNonRoot"), p["securityContext"].pop("runAsNonRoot")), "runAsNonRoot"),
    (lambda c, p: c["resources"].pop("limits"), "limits must set cpu and memory"),
    (lambda c, p: c.update(image="visiong1-cpu:latest"), "not pinned"),
    (lambda c, p: c.update(image="visiong1-cpu"), "not pinned"),
])
def test_security_lint_sees_each_violation(mutation, expected):
    objects = render("paper-8gpu")
    (api,) = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "visiong1-api"]
    pod = api["spec"]["template"]["spec"]
    mutation(pod["containers"][0], pod)
    problems = security_problems(objects)
    assert len(problems) == 1 and expected in problems[0]


@pytest.mark.parametrize("name", RENDERED)
def test_ray_requires_the_cluster_token_everywhere(name):
    objects = render(name)
    for spec in cluster_specs(objects):
        assert spec["authOptions"] == {"mode": "token", "secretName": "visiong1-ray-token"}
    # Ray clients outside the operator's reach (the API, the RayJob submitter) present the same token.
    clients = [c for where, c, _ in containers(objects) if where.startswith(("Deployment/visiong1-api", "RayJob"))]
    assert clients
    for container in clients:
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "visiong1-ray-token", "key": "auth_token"}


@pytest.mark.parametrize("name", RENDERED)
def test_head_is_cpu_only_and_schedules_no_work(name):
    for spec in cluster_specs(render(name)):
        head = spec["headGroupSpec"]
        assert head["rayStartParams"]["num-cpus"] == "0" and head["rayStartParams"]["num-gpus"] == "0"
        assert "resources" not in head  # no custom resource either: no role can be pinned to the head
        for container in head["template"]["spec"]["containers"]:
            assert not any("gpu" in key for bound in container["resources"].values() for key in bound)


def non_ray_pods_hide_the_service_account_token(objects: list[dict]) -> list[str]:
    return [where for where, template in pod_templates(objects) if not where.startswith("ray cluster")
            and template["spec"].get("automountServiceAccountToken") is not False]


@pytest.mark.parametrize("name", RENDERED)
def test_pods_without_kubernetes_api_needs_get_no_service_account_token(name):
    # Ray heads keep theirs: the autoscaler sidecar scales worker groups through the Kubernetes API.
    assert non_ray_pods_hide_the_service_account_token(render(name)) == []


@pytest.mark.skipif(KUBECTL is None, reason="make-secrets.sh renders Secrets with kubectl")
def test_make_secrets_provides_every_secret_the_manifests_reference():
    def generate() -> dict[str, dict[str, str]]:
        out = subprocess.run(["bash", str(K8S / "tools" / "make-secrets.sh"), "--print", "visiong1"],
                             capture_output=True, text=True, check=True).stdout
        return {s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
                for s in yaml.safe_load_all(out) if s}

    first, second = generate(), generate()
    referenced = set()
    for name in RENDERED:
        text = _render(name)
        referenced |= {(m["name"], m["key"]) for m in _secret_refs(yaml.safe_load_all(text))}
    provided = {(name, key) for name, data in first.items() for key in data}
    assert referenced and referenced <= provided
    tokens = [value for data in first.values() for key, value in data.items() if key != "url"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", t) for t in tokens) and len(set(tokens)) == len(tokens)
    assert first["visiong1-store"]["url"] == (f"postgresql://visiong1:{first['visiong1-store']['password']}"
                                              "@visiong1-postgres:5432/visiong1")
    assert first["visiong1-ray-token"] != second["visiong1-ray-token"]  # fresh randomness on every run


def _secret_refs(objects) -> list[dict]:
    """Every (Secret name, key) the objects read: env secretKeyRefs, scrape credentials, KubeRay's auth token."""
    refs = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"secretKeyRef", "credentials"}:
                    refs.append(value)
                elif key == "authOptions":
                    refs.append({"name": value["secretName"], "key": "auth_token"})
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for obj in objects:
        walk(obj)
    return refs


# --- network policies --------------------------------------------------------------------------------------------

def allowed_peers(objects: list[dict], pod_labels: dict, port: int) -> list[dict] | None:
    """Peers allowed to reach `port` on a pod with `pod_labels`, per the NetworkPolicies (ingress only):
    None when no policy selects the pod (everything may connect), else a list of `from` entries, with {} for
    'any source'."""
    selecting = [p for p in by_kind(objects, "NetworkPolicy")
                 if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                 and p["spec"]["podSelector"].get("matchLabels", {}).items() <= pod_labels.items()]
    if not selecting:
        return None
    peers = []
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(p["port"] <= port <= p.get("endPort", p["port"]) for p in ports):
                continue
            peers += rule.get("from") or [{}]
    return peers


RAY_HEAD = {"app.kubernetes.io/name": "visiong1-ray", "app.kubernetes.io/component": "ray-head"}
RAY_WORKER = {"app.kubernetes.io/name": "visiong1-ray", "app.kubernetes.io/component": "ray-rollout"}
RAY_PODS = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "visiong1-ray"}}}
API_PODS = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "visiong1-api"}}}
SUBMITTER_PODS = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "visiong1-submitter"}}}


def namespace(name: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


RAY_PORT_PEERS = {  # what may reach each Ray port; 12345 stands for any raylet/object-manager/worker/NCCL port
    6379: [RAY_PODS], 12345: [RAY_PODS],
    10001: [RAY_PODS, API_PODS],
    8265: [RAY_PODS, namespace("kuberay-system"), SUBMITTER_PODS],
    8080: [RAY_PODS, namespace("monitoring")],
    44217: [RAY_PODS, namespace("monitoring")],
}


def network_problems(objects: list[dict]) -> list[str]:
    problems = []
    for port, expected in RAY_PORT_PEERS.items():
        peers = allowed_peers(objects, RAY_HEAD, port)
        if peers is None or sorted(map(json.dumps, peers)) != sorted(map(json.dumps, expected)):
            problems.append(f"Ray head port {port}: open to {peers}")
    worker_peers = allowed_peers(objects, RAY_WORKER, 10001)
    if worker_peers != [RAY_PODS]:
        problems.append(f"Ray worker port 10001: open to {worker_peers}")
    if "Deployment" in {o["kind"] for o in objects}:
        api_peers = allowed_peers(objects, {"app.kubernetes.io/name": "visiong1-api"}, 8000)
        if api_peers is None or sorted(map(json.dumps, api_peers)) != sorted(
                map(json.dumps, [namespace("ingress-nginx"), namespace("monitoring")])):
            problems.append(f"API port 8000: open to {api_peers}")
        if allowed_peers(objects, {"app.kubernetes.io/name": "visiong1-postgres"}, 5432) != [API_PODS, RAY_PODS]:
            problems.append("PostgreSQL: open beyond the API and the Ray pods")
    if allowed_peers(objects, {"app.kubernetes.io/name": "anything-else"}, 80) != []:
        problems.append("no default deny: unlisted pods accept any ingress")
    return problems


@pytest.mark.parametrize("name", RENDERED)
def test_network_policies_confine_ray_and_the_api(name):
    assert network_problems(render(name)) == []


@pytest.mark.parametrize("opening", [
    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "visiong1-ray"}}, "ingress": [{}]},
    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "visiong1-ray"}},
     "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 8265}]}]},
    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "visiong1-api"}},
     "ingress": [{"from": [{"namespaceSelector": {}}]}]},
])
def test_network_lint_sees_an_opened_port(opening):
    objects = render("paper-8gpu")
    objects.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "oops"},
                    "spec": {"policyTypes": ["Ingress"], **opening}})
    assert network_problems(objects)


# --- run configs against the worker groups -----------------------------------------------------------------------

def group_capacity(group: dict) -> tuple[float, float]:
    """(CPUs, GPUs) of one pod of a worker group, from its container limits."""
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    return quantity(limits["cpu"]), quantity(limits.get("nvidia.com/gpu", 0))


def role_demands(config) -> dict[str, tuple[int, float, float]]:
    """Role -> (actors, CPUs each, GPUs each)."""
    return {"rollout": (config.rollout.replicas, config.rollout.num_cpus, config.rollout.num_gpus),
            "learner": (config.learner.ranks, config.learner.num_cpus, config.learner.num_gpus),
            "reward": (config.reward.workers, config.reward.num_cpus, 0.0)}


@pytest.mark.parametrize("name", RENDERED)
def test_each_role_is_pinned_to_worker_groups_that_can_hold_it(name):
    objects = render(name)
    config = run_config(objects)
    (spec,) = cluster_specs(objects)
    demands = role_demands(config)
    for role in ROLES:
        resource = getattr(config, role).node_resource
        assert resource, f"{role}.node_resource is not set: {role} actors could land anywhere"
        groups = [g for g in spec["workerGroupSpecs"] if resource in g.get("resources", {})]
        assert groups, f"no worker group advertises {resource}"
        for group in groups:
            cpus, gpus = group_capacity(group)
            _, cpu_each, gpu_each = demands[role]
            assert cpu_each <= cpus and gpu_each <= gpus, f"one {role} actor does not fit a {group['groupName']} pod"
    for group in spec["workerGroupSpecs"]:
        roles = [r for r in ROLES if getattr(config, r).node_resource in group.get("resources", {})]
        cpus, gpus = group_capacity(group)
        used_cpus = sum(demands[r][0] * demands[r][1] for r in roles)
        used_gpus = sum(demands[r][0] * demands[r][2] for r in roles)
        # Learner ranks must fit without the autoscaler; everything must fit at the group's maximum.
        pods = group["minReplicas"] if "learner" in roles else group["maxReplicas"]
        assert used_cpus <= pods * cpus and used_gpus <= pods * gpus, (group["groupName"], roles)


@pytest.mark.parametrize("name", RENDERED)
def test_scaling_rollout_never_touches_a_learner_pod(name):
    objects = render(name)
    config = run_config(objects)
    for spec in cluster_specs(objects):
        for group in spec["workerGroupSpecs"]:
            if config.learner.node_resource in group.get("resources", {}):
                assert group["minReplicas"] == group["maxReplicas"] == group["replicas"], group["groupName"]
        rollout_groups = [g for g in spec["workerGroupSpecs"] if config.rollout.node_resource in g["resources"]]
        assert spec["enableInTreeAutoscaling"] is True
        if name != "small":  # one GPU: the rollout replica shares the learner's fixed pod
            assert any(g["maxReplicas"] > g["minReplicas"] for g in rollout_groups)


PLACEMENT_FIELDS = {"model.cache_dir", "rollout.node_resource", "learner.node_resource", "reward.node_resource",
                    "selection.influence.node_resource",
                    "api.host", "ray.address", "ray.num_cpus"}


@pytest.mark.parametrize("shape", sorted(sync_run_configs.SHAPES))
def test_shipped_run_configs_are_generated_from_the_recipe(shape):
    shipped = (K8S / shape).read_text()
    assert shipped == sync_run_configs.run_config_text(shape), (
        f"k8s/{shape} is out of date with configs/vision_g1_7b.yaml: run python k8s/tools/sync_run_configs.py")


def flat(tree: dict, prefix: str = "") -> dict:
    """Nested sections as dotted keys ({"a": {"b": 1}} -> {"a.b": 1}); lists stay values."""
    leaves = {}
    for key, value in tree.items():
        leaves.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return leaves


@pytest.mark.parametrize("name,sizes", [
    ("paper-8gpu", set()),
    ("paper-128gpu", {"name", "rollout.replicas", "learner.ranks"}),
])
def test_paper_shapes_keep_the_recipe_of_configs_vision_g1_7b(name, sizes):
    recipe_json = json.dumps(load_config(ROOT / "configs" / "vision_g1_7b.yaml").model_dump(mode="json"))
    for recipe_path, shared_path in sync_run_configs.SHARED_VOLUME_PATHS.items():  # mounts on the shared volume
        recipe_json = recipe_json.replace(recipe_path, shared_path)
    recipe = flat(json.loads(recipe_json))
    shipped = flat(run_config(render(name)).model_dump(mode="json"))
    differing = {key for key in recipe if recipe[key] != shipped[key]}
    assert differing <= PLACEMENT_FIELDS | sizes, {k: (recipe[k], shipped[k]) for k in differing}


def test_rayjob_runs_the_mounted_run_config_on_its_own_head():
    (job,) = by_kind(render("rayjob"), "RayJob")
    assert job["spec"]["entrypoint"].split()[:4] == ["visiong1", "demo", "-c", "/etc/visiong1/run.yaml"]
    assert "ray.address=auto" in job["spec"]["entrypoint"]  # the head the job runs on, not the API's Ray Client URL
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mount = {"name": "run-config", "mountPath": "/etc/visiong1", "readOnly": True}
    assert mount in head["containers"][0]["volumeMounts"]
    (cluster,) = by_kind(render("paper-8gpu"), "RayCluster")
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]  # the replacement copies the cluster spec whole


# --- images and Dockerfiles --------------------------------------------------------------------------------------

DOCKERFILES = sorted(p for p in (ROOT / "docker").glob("Dockerfile.*") if p.suffix != ".dockerignore")


def dockerfile_problems(text: str) -> list[str]:
    """Base images pinned by a version tag (never latest), the image ends as a numeric non-root USER."""
    problems = []
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    bases = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    if not bases:
        problems.append("no FROM")
    for base in bases:
        if not image_pinned(base):
            problems.append(f"base image {base} is not pinned by a version tag")
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    if not users or not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]):
        problems.append(f"final USER {users[-1] if users else None} is not a numeric non-root uid")
    if re.search(r":latest\b", text):
        problems.append("mentions a :latest tag")
    return problems


def test_both_image_variants_have_a_dockerfile():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.cuda"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_pinned_and_unprivileged(dockerfile):
    text = dockerfile.read_text()
    assert dockerfile_problems(text) == []
    ignore = Path(f"{dockerfile}.dockerignore").read_text().split()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source}" in ignore or f"!{source}/" in ignore, f"{source} is excluded from the context"


@pytest.mark.parametrize("text,expected", [
    ("FROM python:latest\nUSER 1000\n", "not pinned"),
    ("FROM python\nUSER 1000\n", "not pinned"),
    ("FROM python:3.11.11-slim\nUSER root\n", "non-root"),
    ("FROM python:3.11.11-slim\nRUN true\n", "non-root"),
    ("FROM python:3.11.11-slim\nUSER 0:0\n", "non-root"),
])
def test_dockerfile_lint_sees_each_violation(text, expected):
    problems = dockerfile_problems(text)
    assert len(problems) >= 1 and any(expected in p for p in problems)


@pytest.mark.parametrize("name", RENDERED)
def test_manifests_name_only_images_this_repository_builds_or_pins(name):
    for where, container, _ in containers(render(name)):
        if "image" not in container:
            continue
        repository, _, tag = container["image"].rpartition(":")
        variant = repository.rsplit("/", 1)[-1]
        if variant.startswith("visiong1-"):
            assert (ROOT / "docker" / f"Dockerfile.{variant.removeprefix('visiong1-')}").exists(), where
            assert tag == PROJECT_VERSION, f"{where}: {container['image']} is not the project version"
        else:
            assert variant == "postgres", f"{where}: unexpected third-party image {container['image']}"


# --- Grafana dashboard -------------------------------------------------------------------------------------------

DASHBOARD = K8S / "base" / "control-plane" / "visiong1-dashboard.json"


@cache
def produced_metric_names() -> set[str]:
    """Prometheus names the reward HTTP service, the roles' live metrics (the reward actors' included) and Ray 2.60
    export today (the API's step metrics are checked apart)."""
    from visiong1.rewards.metrics import RewardMetrics

    from actors.telemetry import METRICS

    names = {sample.name for metric in RewardMetrics().registry.collect() for sample in metric.samples}
    names |= {f"ray_{name}{suffix}" for name in METRICS for suffix in ("", "_total", "_bucket", "_count", "_sum")}
    names |= {f"{metric.name}{suffix}" for metric in RewardMetrics().registry.collect()
              for suffix in ("_total", "_bucket", "_count", "_sum")}
    import ray

    ray_source = "\n".join(p.read_text() for p in [
        Path(ray.__file__).parent / "dashboard/modules/reporter/reporter_agent.py",
        Path(ray.__file__).parent / "autoscaler/_private/prom_metrics.py",
        Path(ray.__file__).parent / "_private/telemetry/metric_cardinality.py"])
    for quoted in set(re.findall(r'"([a-z_]+)"', ray_source)):
        names |= {f"ray_{quoted}", f"autoscaler_{quoted}"}
    return names


def dashboard_problems(dashboard: dict) -> list[str]:
    """Every panel queries metrics that exist: the reward actors' and Ray's, or the API's export of a step metric
    (`visiong1_<key>`) whose metrics key the panel's description names and the code writes."""
    from services.api.telemetry import metric_name

    source = "\n".join(p.read_text() for package in ("actors", "visiong1") for p in (ROOT / package).rglob("*.py"))
    problems = []
    for panel in dashboard["panels"]:
        names = {n for target in panel["targets"]
                 for n in re.findall(r"\b((?:visiong1|ray|autoscaler)_[a-z0-9_]+)\b", target["expr"])}
        step_metrics = {metric_name(key) for key in re.findall(r"`([a-z_/]+)`", panel["description"])
                        if f'"{key}"' in source}
        missing = names - produced_metric_names() - step_metrics
        if not names:
            problems.append(f"{panel['title']}: no metric queried")
        elif missing:
            problems.append(f"{panel['title']}: {sorted(missing)} are not exported anywhere")
    return problems


def test_dashboard_queries_real_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("round", "accuracy by domain", "tokens/s", "replicas", "weight version", "latency", "reason",
                  "step time"):
        assert topic in titles, topic
    assert dashboard_problems(dashboard) == []


def test_dashboard_check_sees_an_invented_metric_and_an_unwritten_key():
    dashboard = json.loads(DASHBOARD.read_text())
    real = next(p for p in dashboard["panels"] if "visiong1_reward_samples_total" in p["targets"][0]["expr"])
    real["targets"][0]["expr"] = "sum(visiong1_made_up_total)"
    step = next(p for p in dashboard["panels"] if "`rollout/weight_version`" in p["description"])
    step["description"] = step["description"].replace("`rollout/weight_version`", "`rollout/no_such_key`")
    step["targets"][0]["expr"] = "max by (run_id) (visiong1_rollout_no_such_key)"
    problems = sorted(dashboard_problems(dashboard))
    assert len(problems) == 2 and "made_up" in problems[0] and "no_such_key" in problems[1]


def test_dashboard_ships_as_a_grafana_sidecar_config_map():
    (config_map,) = [c for c in by_kind(render("paper-8gpu"), "ConfigMap")
                     if c["metadata"]["name"] == "visiong1-grafana-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["visiong1-dashboard.json"]) == json.loads(DASHBOARD.read_text())
