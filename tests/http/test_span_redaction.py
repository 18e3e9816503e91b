"""An upstream error page that echoes the key leaves no piece of it in any span: status descriptions,
attributes and events of every span the request produced."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.builder import build_gateway
from gateway.config import parse_settings
from gateway.http.app import create_app
from gateway.telemetry.tracing import Tracing
from tests.fakes.faulty_upstream import FaultyUpstream

KEY = "7e2a9c4b1f0d6e38" * 4  # 64 hex characters, no prefix


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as server:
        yield server


@pytest.mark.parametrize("stream", [False, True])
async def test_no_piece_of_the_key_reaches_a_span(
    upstream: FaultyUpstream, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    monkeypatch.setenv("SPAN_UPSTREAM_KEY", KEY)
    settings = parse_settings(f"""
providers:
  - name: up
    kind: openai
    base_url: {upstream.url}
    api_key_env: SPAN_UPSTREAM_KEY
    max_retries: 1
    models: [{{id: keyleak}}]
cache: {{enabled: false}}
""")
    exporter = InMemorySpanExporter()
    gateway = build_gateway(settings, tracing=Tracing.with_processor(SimpleSpanProcessor(exporter), "test"))
    app = create_app(settings, gateway=gateway)
    await gateway.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            body = {"model": "up/keyleak", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            response = await client.post("/v1/chat/completions", json=body)
    finally:
        await gateway.aclose()
    assert response.status_code == 502
    spans = exporter.get_finished_spans()
    assert spans
    text = "\n".join(
        f"{s.name} {s.status.description} {dict(s.attributes or {})} "
        + " ".join(f"{e.name} {dict(e.attributes or {})}" for e in s.events)
        for s in spans
    )
    assert "keyleak" in text  # the spans do describe the failed calls
    pieces = [KEY[i : i + 12] for i in range(len(KEY) - 11)]
    assert [p for p in pieces if p in text] == [], text
