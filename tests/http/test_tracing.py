"""Traces, asserted with the OpenTelemetry SDK's in-memory exporter: the span tree for a direct call (retries
and a fallback visible) and for a fan-out strategy, GenAI attributes, a continued traceparent, bounded span
names, one span per stream (not per chunk), and no secret or prompt text anywhere."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.builder import build_gateway
from gateway.config import parse_settings
from gateway.http.app import create_app
from gateway.telemetry.tracing import Tracing
from tests.fakes.openai_upstream import FakeOpenAI

SECRET = "sk-tracing-SECRET-0123456789"
PROMPT = "my very private prompt text"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def client(
    fake: FakeOpenAI, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncTestClient[Any]]:
    monkeypatch.setenv("TRACING_UPSTREAM_KEY", SECRET)
    settings = parse_settings(f"""
providers:
  - name: up
    kind: openai
    base_url: {fake.url}
    api_key_env: TRACING_UPSTREAM_KEY
    max_retries: 1
    models: [{{id: echo}}, {{id: status-503}}]
  - name: m
    kind: mock
    models: [{{id: a, reply: "a: {{prompt}}"}}, {{id: b, reply: "b: {{prompt}}"}}, {{id: lead, quality: 0.9}}]
fallbacks:
  up/status-503: [up/echo]
strategies:
  ultra-moa: {{kind: simple, candidates: [m/a, m/b], lead: m/lead}}
cache: {{enabled: false}}
""")
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter), "test-gateway")
    app = create_app(settings, gateway=build_gateway(settings, tracing=tracing))
    async with AsyncTestClient(app=app) as test_client:  # type: ignore[arg-type]
        yield test_client


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def chat(client: AsyncTestClient[Any], model: str, **extra: Any) -> Any:
    headers = extra.pop("headers", {})
    return await client.post(
        "/v1/chat/completions",
        headers=headers,
        json={"model": model, "messages": [{"role": "user", "content": PROMPT}], **extra},
    )


async def test_direct_call_tree_shows_retries_and_the_fallback(
    client: AsyncTestClient[Any], exporter: InMemorySpanExporter
) -> None:
    response = await chat(client, "up/status-503")
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    [server] = by_name(spans, "POST /v1/chat/completions")
    [strategy] = by_name(spans, "ultra.strategy direct")
    failed = by_name(spans, "chat status-503")
    [served] = by_name(spans, "chat echo")
    assert server.kind == SpanKind.SERVER
    assert parent_of(strategy) == server.context.span_id
    assert len(failed) == 2  # the first try and its retry, each its own span
    for span in [*failed, served]:
        assert span.kind == SpanKind.CLIENT
        assert parent_of(span) == strategy.context.span_id
        assert span.context.trace_id == server.context.trace_id
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["server.address"] == "127.0.0.1"
    assert all(s.status.status_code == StatusCode.ERROR for s in failed)
    assert failed[0].attributes["error.type"] == "http_503"
    assert served.attributes["gen_ai.request.model"] == "echo"
    assert served.attributes["gen_ai.usage.input_tokens"] == 7
    assert served.attributes["gen_ai.usage.output_tokens"] == 3
    assert served.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert served.attributes["gen_ai.response.id"] == "chatcmpl-fake"
    assert strategy.attributes["ultra.providers"] == "up/echo"
    assert response.headers["x-ultra-trace-id"] == format(server.context.trace_id, "032x")
    assert response.json()["ultra"]["trace_id"] == response.headers["x-ultra-trace-id"]


async def test_fan_out_tree_has_every_call_under_the_strategy_span(
    client: AsyncTestClient[Any], exporter: InMemorySpanExporter
) -> None:
    assert (await chat(client, "ultra-moa")).status_code == 200
    spans = exporter.get_finished_spans()
    [strategy] = by_name(spans, "ultra.strategy ultra-moa")
    calls = [s for s in spans if s.kind == SpanKind.CLIENT]
    roles = sorted(str(s.attributes["ultra.role"]) for s in calls)
    assert roles == ["analysis", "candidate", "candidate", "synthesis"]
    assert all(parent_of(s) == strategy.context.span_id for s in calls)
    assert strategy.attributes["ultra.calls"] == 4


async def test_incoming_traceparent_is_continued(client: AsyncTestClient[Any], exporter: InMemorySpanExporter) -> None:
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    response = await chat(client, "up/echo", headers={"traceparent": traceparent})
    assert response.headers["x-ultra-trace-id"] == TRACE_ID
    assert all(format(s.context.trace_id, "032x") == TRACE_ID for s in exporter.get_finished_spans())
    [server] = by_name(exporter.get_finished_spans(), "POST /v1/chat/completions")
    assert server.parent is not None
    assert server.parent.span_id == 0x00F067AA0BA902B7


async def test_span_names_are_route_templates(client: AsyncTestClient[Any], exporter: InMemorySpanExporter) -> None:
    await client.get("/v1/models/up%2Fecho")
    await client.get("/no/such/thing/42")
    names = {s.name for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER}
    assert names == {"GET /v1/models/{model_id}", "GET"}


async def test_a_stream_is_one_server_span_and_one_client_span(
    client: AsyncTestClient[Any], exporter: InMemorySpanExporter
) -> None:
    response = await chat(client, "up/echo", stream=True)
    assert response.text.endswith("data: [DONE]\n\n")
    spans = exporter.get_finished_spans()
    assert len(by_name(spans, "POST /v1/chat/completions")) == 1
    [call] = by_name(spans, "chat echo")
    assert call.attributes["gen_ai.request.stream"] is True
    assert call.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert call.attributes["gen_ai.usage.output_tokens"] == 3
    assert len(spans) == 3  # server, strategy, one client: no span per chunk


async def test_no_secret_and_no_prompt_in_any_span(
    client: AsyncTestClient[Any], exporter: InMemorySpanExporter
) -> None:
    await chat(client, "up/status-503")
    await chat(client, "ultra-moa", stream=True)
    text = repr(
        [
            (
                s.name,
                dict(s.attributes or {}),
                [(e.name, dict(e.attributes or {})) for e in s.events],
                s.status.description,
            )
            for s in exporter.get_finished_spans()
        ]
    )
    assert SECRET not in text
    assert PROMPT not in text


async def test_without_tracing_the_callers_trace_id_is_still_returned(fake: FakeOpenAI) -> None:
    settings = parse_settings("providers: [{name: m, kind: mock, models: [{id: a}]}]\ncache: {enabled: false}\n")
    app = create_app(settings, gateway=build_gateway(settings, tracing=Tracing(None)))
    async with AsyncTestClient(app=app) as test_client:  # type: ignore[arg-type]
        plain = await chat(test_client, "m/a")
        assert "x-ultra-trace-id" not in plain.headers
        assert plain.json()["ultra"]["trace_id"] is None
        traced = await chat(test_client, "m/a", headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
        assert traced.headers["x-ultra-trace-id"] == TRACE_ID
        assert traced.json()["ultra"]["trace_id"] == TRACE_ID


SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?[0-9.e+-]+(Inf)?$')


async def test_metrics_are_prometheus_text_with_alias_labels(client: AsyncTestClient[Any]) -> None:
    await chat(client, "ultra-moa")
    await chat(client, "up/status-503")
    await chat(client, "nope/none")
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or SAMPLE.match(line), line
    assert 'ultra_requests_total{model="ultra-moa",strategy="ultra-moa",status="200"} 1' in text
    # a name the gateway does not serve is counted, but never becomes a label of its own
    assert 'ultra_requests_total{model="unknown",strategy="direct",status="404"} 1' in text
    assert "nope/none" not in text
    assert 'gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name="chat"' in text
    assert 'gen_ai_token_type="output"' in text
    # every failed try is counted: the one the retry layer retried, and the last one
    assert 'ultra_provider_errors_total{deployment="up/status-503",error_type="http_503",retried="yes"} 1' in text
    assert 'ultra_provider_errors_total{deployment="up/status-503",error_type="http_503",retried="no"} 1' in text
    assert 'ultra_cache_lookups_total{result="bypass"}' in text
    assert SECRET not in text
    assert PROMPT not in text


async def test_one_json_access_line_per_request_without_secrets(
    client: AsyncTestClient[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ultra_gateway.access"):
        await chat(client, "ultra-moa", headers={"x-request-id": "req-log-1"})
        await chat(client, "up/echo", stream=True)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ultra_gateway.access"]
    assert len(lines) == 2
    first, streamed = lines
    assert first["request_id"] == "req-log-1"
    assert first["trace_id"]
    assert (first["model"], first["strategy"], first["status"], first["route"]) == (
        "ultra-moa",
        "ultra-moa",
        200,
        "/v1/chat/completions",
    )
    assert first["providers"] == ["m/a", "m/b", "m/lead"]
    assert first["tokens"] > 0
    assert streamed["tokens"] == 10  # the stream's final account, written after it ended
    assert all(SECRET not in r.getMessage() and PROMPT not in r.getMessage() for r in caplog.records)


async def test_content_is_captured_only_when_the_config_opts_in(exporter: InMemorySpanExporter) -> None:
    settings = parse_settings(
        "providers: [{name: m, kind: mock, models: [{id: a, reply: 'a: {prompt}'}]}]\n"
        "cache: {enabled: false}\ntelemetry: {capture_content: true}\n"
    )
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter), "t")
    app = create_app(settings, gateway=build_gateway(settings, tracing=tracing))
    async with AsyncTestClient(app=app) as test_client:  # type: ignore[arg-type]
        await chat(test_client, "m/a")
    [call] = by_name(exporter.get_finished_spans(), "chat a")
    assert PROMPT in str(call.attributes["gen_ai.input.messages"])
    assert f"a: {PROMPT}" in str(call.attributes["gen_ai.output.messages"])
