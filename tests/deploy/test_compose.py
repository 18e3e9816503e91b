"""deploy/compose: every cross-reference between the compose file and the configs it mounts holds (no Docker
engine here to bring the stack up). `docker-compose config` validates the file itself when it is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import parse_settings
from gateway.telemetry.metrics import Metrics
from tests._gateway_process import ROOT

HERE = ROOT / "deploy" / "compose"
_DEFAULTED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load(name: str) -> Any:
    return yaml.safe_load((HERE / name).read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    document: dict[str, Any] = load("compose.yaml")
    return document


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def gateways() -> dict[str, Any]:
    return {name: s for name, s in services().items() if name.startswith("gateway-")}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as compose resolves it with nothing set on the host (the `:-` defaults)."""
    return {k: _DEFAULTED.sub(lambda m: m.group(2) or "", str(v)) for k, v in service["environment"].items()}


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host file, for the bind mounts of files beside compose.yaml."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out[target] = (HERE / source).resolve()
    return out


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    assert parts.hostname is not None
    assert parts.port is not None, url
    return parts.hostname, parts.port


def test_two_identical_gateway_replicas_on_distinct_host_ports() -> None:
    replicas = gateways()
    assert len(replicas) == 2
    first, second = replicas.values()
    assert {k: v for k, v in first.items() if k != "ports"} == {k: v for k, v in second.items() if k != "ports"}
    assert (HERE / first["build"]["context"] / "Dockerfile").resolve() == ROOT / "Dockerfile"
    published = [p.split(":")[0] for s in services().values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), "two services publish the same host port"
    container_port = environment(first)["ULTRA_PORT"]
    assert all(p.split(":")[1] == container_port for s in replicas.values() for p in s["ports"])


def test_every_mounted_file_and_every_dependency_exists() -> None:
    for name, service in services().items():
        for target, source in mounts(service).items():
            assert source.is_file(), f"{name}: {source} (mounted at {target}) does not exist"
        for dependency in service.get("depends_on", []):
            assert dependency in services(), f"{name} depends on unknown service {dependency}"


def test_the_gateway_config_is_valid_and_puts_cache_and_limits_on_the_stack_redis() -> None:
    gateway = next(iter(gateways().values()))
    env = environment(gateway)
    config = mounts(gateway)[env["ULTRA_CONFIG"]]
    settings = parse_settings(config.read_text(), source=str(config), env=env)
    redis_of = {}
    for section in (settings.cache, settings.rate_limits):
        assert section.enabled
        assert section.backend == "redis"
        assert section.redis_url is not None
        host, _ = host_port(section.redis_url)
        assert host in services(), f"{section.redis_url} names no compose service"
        assert host in gateway["depends_on"]
        redis_of[section is settings.cache] = " ".join(services()[host]["command"])
    assert "allkeys-lru" in redis_of[True], "the cache's Redis evicts cold entries under memory pressure"
    assert "noeviction" in redis_of[False], "the limiter's Redis never silently drops limit state"
    assert settings.cache.key_secret_env in env
    assert all(k.key_env in env for k in settings.auth.keys if k.key_env)


def test_traces_flow_gateway_to_collector_to_jaeger() -> None:
    env = environment(next(iter(gateways().values())))
    collector_host, collector_port = host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    collector = services()[collector_host]
    config_path = next(p for t, p in mounts(collector).items() if any(t in c for c in collector["command"]))
    config = yaml.safe_load(config_path.read_text())
    assert host_port(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"])[1] == collector_port
    pipeline = config["service"]["pipelines"]["traces"]
    assert set(pipeline["receivers"]) <= set(config["receivers"])
    assert set(pipeline["processors"]) <= set(config["processors"])
    for exporter in pipeline["exporters"]:
        host, port = host_port(config["exporters"][exporter]["endpoint"])
        assert host == "jaeger"
        assert port == 4317  # Jaeger's OTLP/gRPC port
    assert services()["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_prometheus_scrapes_every_replica_and_alerts_only_on_metrics_that_exist() -> None:
    prometheus = services()["prometheus"]
    files = mounts(prometheus)
    config = yaml.safe_load(files["/etc/prometheus/prometheus.yml"].read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "ultra-gateway")
    assert job["metrics_path"] == "/metrics"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:{environment(s)['ULTRA_PORT']}" for name, s in gateways().items()}
    for rule_file in config["rule_files"]:
        assert rule_file in files, f"{rule_file} is not mounted into prometheus"
    known = {m.name for m in vars(Metrics()).values() if hasattr(m, "name")}
    rules = [r for g in yaml.safe_load(files["/etc/prometheus/alerts.yml"].read_text())["groups"] for r in g["rules"]]
    assert rules
    for rule in rules:
        expr = re.sub(r"\b(?:by|without)\s*\([^)]*\)|\{[^}]*\}", "", rule["expr"])  # label names are not metrics
        used = set(re.findall(r"\b(?:ultra|gen_ai)_[a-z_]+", expr))
        used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
        assert used <= known, f"{rule['alert']} uses metrics the gateway does not export: {used - known}"


def test_docker_compose_accepts_the_file() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        message = "docker-compose is not installed (Debian: apt-get install docker-compose)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    result = subprocess.run(
        [binary, "-f", str(HERE / "compose.yaml"), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
