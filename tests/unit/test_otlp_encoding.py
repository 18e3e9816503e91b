"""The hand-written OTLP encoder against the SDK's: the same spans, decoded with opentelemetry.proto's
ExportTraceServiceRequest, are equal message for message (and byte for byte) — every attribute value type,
events, links, status, remote parents and trace state, dropped counts, several resources and scopes."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from gateway.telemetry._otlp import SpanEncoder

VALUES = {
    "str": "hello",
    "str.empty": "",
    "str.unicode": "héllo wörld ✓ 日本",
    "str.long": "x" * 200,
    "str.longer": "y" * 20_000,
    "bool.true": True,
    "bool.false": False,
    "int": 42,
    "int.zero": 0,
    "int.negative": -7,
    "int.max": 2**63 - 1,
    "int.min": -(2**63),
    "float": 0.25,
    "float.zero": 0.0,
    "float.negative": -1e300,
    "bytes": b"\x00\x01\xff",
    "seq.str": ["a", "", "c"],
    "seq.int": (1, -2, 3),
    "seq.float": [1.5, 2.0],
    "seq.bool": [True, False],
    "seq.empty": [],
    "seq.none": ["a", None],
}


def spans() -> tuple[ReadableSpan, ...]:
    exporter = InMemorySpanExporter()
    resources = [
        Resource.create({"service.name": "one", "deployment.environment": "test", "n": 3}),
        Resource({"service.name": "two"}, schema_url="https://opentelemetry.io/schemas/1.21.0"),
    ]
    for resource in resources:
        provider = TracerProvider(resource=resource, span_limits=SpanLimits(max_span_attributes=40, max_events=2))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        plain = provider.get_tracer("plain")
        scoped = provider.get_tracer(
            "scoped", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.24.0", attributes={"scope.attr": "v"}
        )
        remote = SpanContext(
            0x4BF92F3577B34DA6A3CE929D0E0E4736,
            0x00F067AA0BA902B7,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("vendor", "value"), ("other", "x-1")]),
        )
        with plain.start_as_current_span(
            "server ✓", context=set_span_in_context(NonRecordingSpan(remote)), kind=SpanKind.SERVER, attributes=VALUES
        ) as server:
            server.add_event("plain event")
            server.add_event("event", {"e.int": 1, "e.seq": ["x"]}, timestamp=1_700_000_000_000_000_000)
            server.add_event("third event, dropped by the limit of two")
            child = scoped.start_span(
                "client",
                kind=SpanKind.CLIENT,
                links=[Link(remote, {"link.attr": 1.5}), Link(server.get_span_context())],
            )
            child.set_status(Status(StatusCode.ERROR, "it broke: ✗"))
            child.end()
            for kind in (SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER):
                with plain.start_as_current_span(f"kind {kind.name}", kind=kind) as inner:
                    inner.set_status(StatusCode.OK)
            many = plain.start_span("many attributes", attributes={f"k{i}": i for i in range(50)})
            many.end()
            with pytest.raises(ValueError, match="boom"), plain.start_as_current_span("raised"):
                raise ValueError("boom")
    return exporter.get_finished_spans()


def test_the_bytes_decode_to_what_the_sdk_encodes() -> None:
    batch = spans()
    expected = encode_spans(batch)
    ours = SpanEncoder().encode(batch)
    decoded = ExportTraceServiceRequest.FromString(ours)
    assert decoded == expected
    assert ours == expected.SerializeToString()  # same field order too
    assert len(decoded.resource_spans) == 2
    assert [len(r.scope_spans) for r in decoded.resource_spans] == [2, 2]
    assert any(s.dropped_attributes_count for r in decoded.resource_spans for g in r.scope_spans for s in g.spans)


def test_an_encoder_reused_across_batches_gives_the_same_bytes() -> None:
    batch = spans()
    encoder = SpanEncoder()
    first = encoder.encode(batch)
    assert encoder.encode(batch) == first
    assert ExportTraceServiceRequest.FromString(encoder.encode(batch[:1])) == encode_spans(batch[:1])
    assert encoder.encode(()) == b""


def test_values_equal_in_python_but_not_in_protobuf_are_told_apart() -> None:
    """1, 1.0 and True are one dictionary key; so are 0.0 and -0.0. The encoder remembers encoded values."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_events=0, max_links=0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for value in (1, 1.0, True, 0.0, -0.0, 0, False, "1", float("nan"), float("nan")):
        span = tracer.start_span("same key", attributes={"x": value}, links=[Link(SpanContext(1, 2, False))])
        span.add_event("dropped by the limit")
        span.set_status(Status(StatusCode.ERROR, "same status"))
        span.end()
    batch = exporter.get_finished_spans()
    encoder = SpanEncoder()
    for _ in range(2):
        assert encoder.encode(batch) == encode_spans(batch).SerializeToString()


def test_a_value_protobuf_cannot_hold_leaves_out_the_attribute_not_the_span(caplog: pytest.LogCaptureFixture) -> None:
    span = ReadableSpan(
        "too big",
        context=SpanContext(1, 2, is_remote=False),
        resource=Resource({"service.name": "x"}),
        attributes={"ok": 1, "huge": 2**64, "also.ok": "y"},
        start_time=1,
        end_time=2,
    )
    with caplog.at_level(logging.ERROR):
        expected = encode_spans([span])
        decoded = ExportTraceServiceRequest.FromString(SpanEncoder().encode([span]))
    assert decoded == expected
    [attributes] = [s.attributes for r in decoded.resource_spans for g in r.scope_spans for s in g.spans]
    assert [a.key for a in attributes] == ["ok", "also.ok"]
