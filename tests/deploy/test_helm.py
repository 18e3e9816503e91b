"""deploy/helm/ultra-gateway, linted and rendered by Helm's own Go code (the helm-python-sdk wheel ships it as a
shared library; `pip install -e '.[deploy]'`), every rendered manifest checked against the Kubernetes API's
JSON schemas (kubernetes-validate ships them), and the cross-references between the manifests checked here.

Without the `deploy` extra these tests are skipped locally and fail under CI (`CI` set)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import parse_settings
from tests._gateway_process import ROOT

CHART = ROOT / "deploy" / "helm" / "ultra-gateway"
KUBERNETES = "1.30.0"
SECRET_LOOKING = "sk-this-must-never-be-rendered"


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        message = f"{module} is not installed: pip install -e '.[deploy]'"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def helm() -> Any:
    return _need("helm_python")


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    return _need("kubernetes_validate")


def render(helm: Any, values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """kind -> the one manifest of that kind (this chart renders at most one of each)."""
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values or {}, name="ugw", namespace="llm")
    out: dict[str, dict[str, Any]] = {}
    for path, text in files.items():
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                assert document["kind"] not in out, f"two {document['kind']}s"
                out[document["kind"]] = document
    return out


def container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def env_of(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(manifests)["env"]}


VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "production": {
        "existingSecret": "ultra-keys",
        "redis": {"urlSecret": {"name": "ultra-redis", "key": "url"}},
        "otel": {"endpoint": "http://otel-collector.observability:4318"},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        "extraEnv": [{"name": "OTEL_TRACES_SAMPLER", "value": "parentbased_traceidratio"}],
        "port": 9000,
    },
    "fixed replicas": {"autoscaling": {"enabled": False}, "replicaCount": 3, "podDisruptionBudget": {"enabled": False}},
}


def test_helm_lint_finds_nothing_above_info(helm: Any) -> None:
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{KUBERNETES}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    for values in VARIANTS.values():
        report = helm.lint(str(CHART), values, strict=True)
        assert report["errors"] == [], values


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_manifest_is_valid_kubernetes(helm: Any, kubernetes_validate: Any, variant: str) -> None:
    manifests = render(helm, VARIANTS[variant])
    for kind, manifest in manifests.items():
        if kind == "ServiceMonitor":  # a Prometheus Operator CRD: no schema in Kubernetes itself
            continue
        kubernetes_validate.validate(manifest, KUBERNETES, strict=True)  # raises on any schema violation


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_manifests_point_at_each_other(helm: Any, variant: str) -> None:
    values = VARIANTS[variant]
    manifests = render(helm, values)
    deployment = manifests["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = manifests["Service"]
    assert service["spec"]["selector"] == selector
    main = container(manifests)
    port_names = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in port_names
    assert str(port_names["http"]) == env_of(manifests)["ULTRA_PORT"], "the server binds the port the pod declares"
    assert main["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    config_mount = next(m for m in main["volumeMounts"] if m["name"] == "config")
    assert volumes["config"]["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
    assert env_of(manifests)["ULTRA_CONFIG"] == f"{config_mount['mountPath']}/gateway.yaml"
    security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    config = yaml.safe_load(manifests["ConfigMap"]["data"]["gateway.yaml"])
    assert grace > config["server"]["shutdown_grace_s"], "in-flight requests get to finish before SIGKILL"

    if values.get("autoscaling", {}).get("enabled", True):
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    else:
        assert deployment["spec"]["replicas"] == values["replicaCount"]
        assert "HorizontalPodAutoscaler" not in manifests
    if "PodDisruptionBudget" in manifests:
        assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    else:
        assert values.get("podDisruptionBudget", {}).get("enabled") is False
    if values.get("metrics", {}).get("serviceMonitor", {}).get("enabled"):
        monitor = manifests["ServiceMonitor"]
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    else:
        assert "ServiceMonitor" not in manifests


def test_the_container_runs_the_image_command(helm: Any) -> None:
    from tests.e2e.test_image import dockerfile, final_stage

    cmd = next(i for i in final_stage(dockerfile()) if i.keyword == "CMD").exec_form()
    main = container(render(helm))
    assert [*main["command"], *main["args"]] == cmd


def test_secrets_are_referenced_never_rendered(helm: Any) -> None:
    manifests = render(helm, VARIANTS["production"])
    main = container(manifests)
    assert main["envFrom"] == [{"secretRef": {"name": "ultra-keys"}}]
    assert env_of(manifests)["REDIS_URL"] == {"secretKeyRef": {"name": "ultra-redis", "key": "url"}}
    assert "Secret" not in manifests, "the chart never holds secret values"
    assert "envFrom" not in container(render(helm)), "no secret is referenced unless one is named"


def test_the_configmap_holds_a_config_the_gateway_accepts(helm: Any, tmp_path: Path) -> None:
    values = {
        "config": {
            **yaml.safe_load((CHART / "values.yaml").read_text())["config"],
            "auth": {"keys": [{"name": "team-a", "key_env": "TEAM_A_KEY"}]},
            "cache": {"key_secret_env": "CACHE_SECRET"},
        }
    }
    manifests = render(helm, values)
    text = manifests["ConfigMap"]["data"]["gateway.yaml"]
    env = {"TEAM_A_KEY": SECRET_LOOKING, "CACHE_SECRET": "s", "REDIS_URL": "redis://redis:6379/0"}
    settings = parse_settings(text, source="configmap", env=env)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.workers == 1, "scale with pods: one worker, one metrics registry per pod"
    assert settings.cache.backend == "redis", "REDIS_URL from the chart switches the cache to Redis"
    rendered = json.dumps(manifests)
    assert SECRET_LOOKING not in rendered


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCont": 3}, "'replicaCont' not allowed"),
        ({"port": "8000"}, "/port"),
        ({"redis": {"url": "http://redis:6379"}}, "/redis/url"),
        ({"config": {"providers": []}}, "/config/providers"),
    ],
)
def test_values_with_typos_or_wrong_types_are_refused(helm: Any, values: dict[str, Any], complaint: str) -> None:
    report = helm.lint(str(CHART), values, strict=True)
    assert any(complaint in error for error in report["errors"]), report["errors"]
    with pytest.raises(helm.HelmValuesError):
        render(helm, values)
