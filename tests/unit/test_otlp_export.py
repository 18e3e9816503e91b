"""The gateway's OTLP/HTTP exporter and batching processor against a real receiver on loopback: what arrives
decodes to what the SDK would have sent, with the configured headers and compression, over one kept-alive
connection; retryable answers are retried, others are not; settings only the SDK's exporter supports fall back
to it; shutdown exports what is queued."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from gateway.telemetry._batch import BatchExport
from gateway.telemetry._export import OtlpHttpExporter
from gateway.telemetry.tracing import Tracing
from tests.fakes.threaded import ThreadedApp

pytestmark = pytest.mark.timeout(30)


class Collector:
    """Answers each POST with the next status of `answers` (then 200), recording bodies, headers and the
    client's port (one port: one kept-alive connection)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.ports: list[int] = []
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.close_each = False
        self.got = threading.Event()
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self.server = ThreadedApp(app)

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp inflates a gzip body (and fails on a broken one)
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        self.ports.append(request.transport.get_extra_info("peername")[1] if request.transport else 0)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        response = web.Response(status=status, headers=headers)
        if self.close_each:
            response.force_close()
        self.got.set()
        return response


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    with receiver.server:
        yield receiver


def finished_spans(n: int = 3) -> tuple[ReadableSpan, ...]:
    memory = InMemorySpanExporter()
    tracing = Tracing.with_processor(SimpleSpanProcessor(memory), "export-test")
    for i in range(n):
        span = tracing.start_span(f"span {i}", {"i": i, "s": "value", "f": 0.5, "seq": ["a", "b"]})
        assert span is not None
        span.end()
    return memory.get_finished_spans()


def decoded(body: bytes) -> Any:
    return ExportTraceServiceRequest.FromString(body)


def test_a_batch_arrives_as_the_sdk_would_encode_it_on_one_connection(collector: Collector) -> None:
    exporter = OtlpHttpExporter.from_env(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.server.url}/v1/traces",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-token=abc,x-other=a%20b",
        }
    )
    assert exporter is not None
    spans = finished_spans()
    for _ in range(3):
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert [decoded(body) for body in collector.bodies] == [encode_spans(spans)] * 3
    headers = collector.headers[0]
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["User-Agent"].startswith("OTel-OTLP-Exporter-Python/")
    assert (headers["x-collector-token"], headers["x-other"]) == ("abc", "a b")
    assert len(set(collector.ports)) == 1  # kept alive
    assert exporter.export(spans) == SpanExportResult.FAILURE  # after shutdown


def test_gzip_and_the_general_endpoint_with_the_signal_path_appended(collector: Collector) -> None:
    exporter = OtlpHttpExporter.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.server.url + "/", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip"}
    )
    assert exporter is not None
    assert exporter.endpoint == f"{collector.server.url}/v1/traces"
    spans = finished_spans()
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert collector.headers[0]["Content-Encoding"] == "gzip"
    assert decoded(collector.bodies[0]) == encode_spans(spans)
    exporter.shutdown()


def test_retryable_answers_are_retried_and_others_are_not(collector: Collector) -> None:
    exporter = OtlpHttpExporter(f"{collector.server.url}/v1/traces", timeout_s=10)
    collector.answers = [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})]
    assert exporter.export(finished_spans(1)) == SpanExportResult.SUCCESS
    assert len(collector.bodies) == 3
    collector.answers = [(400, {})]
    assert exporter.export(finished_spans(1)) == SpanExportResult.FAILURE
    assert len(collector.bodies) == 4
    exporter.shutdown()


def test_a_connection_the_collector_closes_is_reopened(collector: Collector) -> None:
    collector.close_each = True
    exporter = OtlpHttpExporter(f"{collector.server.url}/v1/traces")
    for _ in range(3):
        assert exporter.export(finished_spans(1)) == SpanExportResult.SUCCESS
    assert len(collector.bodies) == 3
    assert len(set(collector.ports)) == 3
    exporter.shutdown()


def test_no_collector_is_a_failed_export_not_an_exception() -> None:
    exporter = OtlpHttpExporter("http://127.0.0.1:9/v1/traces", timeout_s=0.5)
    assert exporter.export(finished_spans(1)) == SpanExportResult.FAILURE
    exporter.shutdown()


@pytest.mark.parametrize(
    "setting",
    [
        {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/etc/client.pem", "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/k.pem"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "grpc://collector:4317"},
    ],
)
def test_settings_only_the_sdk_supports_fall_back_to_its_exporter(
    setting: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", **setting}
    assert OtlpHttpExporter.from_env(env) is None
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracing = Tracing.from_env("svc", env=env)
    try:
        processor = tracing.provider._active_span_processor._span_processors[0]  # type: ignore[union-attr]
        assert isinstance(processor, BatchExport)
        assert isinstance(processor.exporter, OTLPSpanExporter)
    finally:
        tracing.shutdown()


def test_a_proxy_for_the_endpoint_falls_back_to_the_sdk_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert OtlpHttpExporter.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) is None
    monkeypatch.setenv("NO_PROXY", "collector")
    assert OtlpHttpExporter.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) is not None


def test_the_processor_exports_full_batches_and_the_rest_on_shutdown() -> None:
    memory = InMemorySpanExporter()
    processor = BatchExport(memory, max_batch=4, schedule_delay_s=3600)
    tracing = Tracing.with_processor(processor, "batch-test")
    for i in range(10):
        span = tracing.start_span(f"s{i}", {})
        assert span is not None
        span.end()
    tracing.shutdown()
    assert [s.name for s in memory.get_finished_spans()] == [f"s{i}" for i in range(10)]


def test_the_processor_leaves_out_unsampled_spans_and_flushes_on_demand() -> None:
    memory = InMemorySpanExporter()
    processor = BatchExport(memory, max_batch=128, schedule_delay_s=3600)
    sampled = TracerProvider()
    sampled.add_span_processor(processor)
    dropped = TracerProvider(sampler=ALWAYS_OFF)
    dropped.add_span_processor(processor)
    dropped.get_tracer("t").start_span("not sampled").end()
    sampled.get_tracer("t").start_span("sampled").end()
    assert processor.force_flush()
    assert [s.name for s in memory.get_finished_spans()] == ["sampled"]
    processor.shutdown()
    assert not processor.force_flush()


def test_bsp_variables_configure_the_processor() -> None:
    env = {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64", "OTEL_BSP_MAX_QUEUE_SIZE": "512", "OTEL_BSP_SCHEDULE_DELAY": "250"}
    processor = BatchExport.from_env(InMemorySpanExporter(), env, max_batch=128)
    assert (processor.max_batch, processor.max_queue, processor.schedule_delay_s) == (64, 512, 0.25)
    default = BatchExport.from_env(InMemorySpanExporter(), {"OTEL_BSP_MAX_QUEUE_SIZE": "nope"}, max_batch=128)
    assert (default.max_batch, default.max_queue, default.schedule_delay_s) == (128, 2048, 5.0)
    processor.shutdown()
    default.shutdown()
