"""Logs ops can use: the access log as JSON lines on its own stream (stdout by default) with when, from where,
who, what and how it went; every other line as JSON too with `--log-format json`; the streams configurable."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests._gateway_process import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

CONFIG = """
providers:
  - name: mock
    kind: mock
    models:
      - {id: fast, reply: "fast", input_cost_per_mtok: 1, output_cost_per_mtok: 2}
auth:
  keys:
    - {name: team-a, key: sk-a, tenant: acme}
"""
FIELDS = {
    "ts", "request_id", "trace_id", "method", "route", "status", "latency_ms", "client", "user_agent", "key",
    "tenant", "model", "strategy", "deployments", "tokens", "cost_usd",
}  # fmt: skip


def chat(gateway: GatewayProcess) -> None:
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "mock/fast", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": "Bearer sk-a", "user-agent": "ops-test/1.0", "x-forwarded-for": "203.0.113.9"},
        timeout=10,
    )
    assert response.status_code == 200


def test_json_everywhere_access_on_stdout(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    with GatewayProcess(config, args=["--log-format", "json"]) as gateway:
        chat(gateway)
        gateway.wait_for_line(lambda line: '"/v1/chat/completions"' in line)
    access = [json.loads(line) for line in gateway.stdout_lines]
    assert len(access) == 1
    line = access[0]
    assert set(line) >= FIELDS
    assert line["ts"].endswith("Z")
    assert line["user_agent"] == "ops-test/1.0"
    # the peer (127.0.0.1) is a trusted proxy for uvicorn, so the client is the address it forwarded
    assert line["client"] == "203.0.113.9"
    assert line["forwarded_for"] == "203.0.113.9"
    assert (line["key"], line["tenant"], line["strategy"], line["deployments"]) == (
        "team-a", "acme", "direct", ["mock/fast"]
    )  # fmt: skip
    assert line["status"] == 200
    assert line["tokens"] > 0
    assert line["cost_usd"] > 0
    # everything on stderr is JSON too, uvicorn's lines included, and no access line is there
    others = [json.loads(line) for line in gateway.stderr_lines if line.strip()]
    assert others
    assert all({"ts", "level", "logger", "message"} <= set(o) for o in others)
    assert any("Uvicorn running on" in o["message"] for o in others)
    assert not any("request_id" in o for o in others)


def test_access_log_to_stderr_or_off(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    with GatewayProcess(config, args=["--access-log", "stderr"]) as gateway:
        chat(gateway)
        gateway.wait_for_line(lambda line: '"/v1/chat/completions"' in line)
    assert not gateway.stdout_lines
    with GatewayProcess(config, args=["--access-log", "off"]) as gateway:
        chat(gateway)
    assert not any("request_id" in line for line in gateway.lines)
