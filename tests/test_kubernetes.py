"""The Kubernetes example: valid manifests for a pinned Kubernetes, checked offline, and each
pod's shard taken from its ordinal, one shard per replica."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import SchemaNotFoundError, ValidationError

from monitor.config import load_config
from monitor.config.shards import Shard, parse_shard

FOLDER = Path(__file__).parent.parent / "deploy" / "kubernetes"
SERVICE_MONITOR = FOLDER / "prometheus-operator" / "servicemonitor.yaml"
# 1.28: the first with the apps.kubernetes.io/pod-index label; and a recent release.
KUBERNETES_VERSIONS = ("1.28.0", "1.33.0")
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of one manifest file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def resources() -> dict[str, dict[str, Any]]:
    """Every core manifest, by kind."""
    found = [d for path in sorted(FOLDER.glob("*.yaml")) for d in documents(path)]
    by_kind = {d["kind"]: d for d in found}
    assert len(by_kind) == len(found), "one resource of each kind"
    return by_kind


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_are_valid_strictly(version: str) -> None:
    """Each manifest passes the bundled schema of the pinned version, unknown fields refused."""
    for kind, resource in resources().items():
        assert kubernetes_validate.validate(resource, version, strict=True), kind


def test_validation_catches_a_misspelt_field() -> None:
    """The strict check is no formality: a misspelt container field is refused."""
    statefulset = copy.deepcopy(resources()["StatefulSet"])
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[0], strict=True)


def test_service_monitor_structure() -> None:
    """The validator has no schema for the operator's CRD, so its shape is checked here:
    it selects the Service and scrapes its named metrics port."""
    [monitor] = documents(SERVICE_MONITOR)
    with pytest.raises(SchemaNotFoundError):
        kubernetes_validate.validate(monitor, KUBERNETES_VERSIONS[0], strict=True)
    service = resources()["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def _container(statefulset: dict[str, Any]) -> dict[str, Any]:
    [container] = statefulset["spec"]["template"]["spec"]["containers"]
    return container


def _expanded(args: list[str], env: dict[str, str]) -> list[str]:
    """The arguments as the kubelet expands $(VAR) references."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], arg) for arg in args]


def test_each_ordinal_runs_its_own_shard() -> None:
    """Pod N runs `--shard N/replicas`, N from the pod-index label, the count from the
    ConfigMap, which equals the replicas: the shards cover the fleet, each once."""
    kinds = resources()
    statefulset, config_map = kinds["StatefulSet"], kinds["ConfigMap"]
    spec = statefulset["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    container = _container(statefulset)
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_INDEX"]["valueFrom"] == {
        "fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}
    }
    count_ref = env["SHARD_COUNT"]["valueFrom"]["configMapKeyRef"]
    assert count_ref["name"] == config_map["metadata"]["name"]
    count = int(config_map["data"][count_ref["key"]])
    assert spec["replicas"] == count
    args = container["args"]
    shards = set()
    for ordinal in range(spec["replicas"]):
        expanded = _expanded(args, {"POD_INDEX": str(ordinal), "SHARD_COUNT": str(count)})
        assert expanded[:3] == ["run", "--config", "/etc/bma-monitor/bma-monitor.yaml"]
        shards.add(parse_shard(expanded[expanded.index("--shard") + 1]))
    assert shards == {Shard(i, count) for i in range(count)}
    # A pod beyond the count (replicas raised, ConfigMap not) refuses its shard.
    extra = _expanded(args, {"POD_INDEX": str(count), "SHARD_COUNT": str(count)})
    with pytest.raises(ValueError, match="out of range"):
        parse_shard(extra[extra.index("--shard") + 1])


def test_pod_wiring(tmp_path: Path) -> None:
    """The config in the ConfigMap loads, keeps its state on the pod's own volume, serves
    on the probed and scraped port, and reads secrets from the mounted Secret."""
    kinds = resources()
    statefulset, config_map, service = kinds["StatefulSet"], kinds["ConfigMap"], kinds["Service"]
    pod = statefulset["spec"]["template"]
    container = _container(statefulset)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] not in volumes  # the claim, not a shared volume

    assert mounts["config"]["mountPath"] == "/etc/bma-monitor"
    for item in volumes["config"]["configMap"]["items"]:
        (tmp_path / item["path"]).write_text(config_map["data"][item["key"]])
    count = config_map["data"]["shards"]
    config = load_config(tmp_path / "bma-monitor.yaml", shard=Shard(1, int(count)))
    assert config.state.path.parent == Path(mounts[claim["metadata"]["name"]]["mountPath"])
    assert config.state.path.name == "state.shard-1.db"
    assert len(config.fleet) == 2

    [port] = container["ports"]
    assert port["containerPort"] == config.http.port and config.http.host == "0.0.0.0"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]

    env = {e["name"]: e.get("value") for e in container["env"]}
    assert mounts["credentials"]["mountPath"] == env["CREDENTIALS_DIRECTORY"]
    assert "secretName" in volumes["credentials"]["secret"]


def test_pod_security() -> None:
    """Non-root (the image's uid 10001), read-only root, no capabilities, RuntimeDefault."""
    statefulset = resources()["StatefulSet"]
    pod = statefulset["spec"]["template"]["spec"]
    context = _container(statefulset)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
