"""The real server exporting traces over OTLP/HTTP (protobuf) to a receiver this test runs, configured only
through OTEL_* variables; with known secrets configured, none of them, and no prompt text, reaches an exported
span, the access log or /metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests._gateway_process import GatewayProcess
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.threaded import ThreadedApp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

UPSTREAM_SECRET = "sk-otlp-upstream-SECRET-0123456789"
CLIENT_SECRET = "sk-otlp-client-SECRET-9876543210"
PROMPT = "a prompt nobody may record"


class Receiver:
    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.got = threading.Event()
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self.server = ThreadedApp(app)

    async def _traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.headers.append(dict(request.headers))
        for resource_spans in message.resource_spans:
            self.resources.append({a.key: a.value.string_value for a in resource_spans.resource.attributes})
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        self.got.set()
        return web.Response(status=200)


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def test_spans_arrive_over_otlp_http_configured_only_by_env(upstream: FakeOpenAI, tmp_path: Path) -> None:
    receiver = Receiver()
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""
providers:
  - {{name: up, kind: openai, base_url: "{upstream.url}", api_key_env: OTLP_UPSTREAM_KEY, models: [{{id: echo}}]}}
auth:
  keys: [{{name: tester, key_env: OTLP_CLIENT_KEY}}]
cache: {{enabled: false}}
""")
    with receiver.server:
        env = {
            "OTLP_UPSTREAM_KEY": UPSTREAM_SECRET,
            "OTLP_CLIENT_KEY": CLIENT_SECRET,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.server.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-token=abc",
            "OTEL_SERVICE_NAME": "gateway-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        with GatewayProcess(config, env=env) as gateway:
            client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=CLIENT_SECRET, max_retries=0)
            response = client.chat.completions.with_raw_response.create(
                model="up/echo", messages=[{"role": "user", "content": PROMPT}]
            )
            trace_id = response.headers["x-ultra-trace-id"]
            metrics = httpx.get(gateway.base_url + "/metrics", timeout=10).text
            assert receiver.got.wait(20), "no spans were exported"
        log = "".join(gateway.lines)
    names = {span.name for span in receiver.spans}
    assert {"POST /v1/chat/completions", "ultra.strategy direct", "chat echo"} <= names
    assert {span.trace_id.hex() for span in receiver.spans if span.name == "chat echo"} == {trace_id}
    assert receiver.resources[0]["service.name"] == "gateway-under-test"
    assert receiver.headers[0]["x-collector-token"] == "abc"
    exported = repr(
        [
            (s.name, [(a.key, a.value) for a in s.attributes], [e.name for e in s.events], s.status)
            for s in receiver.spans
        ]
    )
    assert '"tester"' in log  # the access log names the key
    for secret in (UPSTREAM_SECRET, CLIENT_SECRET, PROMPT):
        assert secret not in exported
        assert secret not in log
        assert secret not in metrics
