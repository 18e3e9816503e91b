"""The gateway's light tracer against the SDK's own: the same calls, with the same ids, leave the same finished
spans (names, ids, parents, kinds, attributes as cleaned and dropped by the SDK's rules, events, links, status,
resource, scope, and the same OTLP bytes but for the timestamps), under the default sampler and others."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from gateway.telemetry._spans import LightSpan, LightTracer
from gateway.telemetry.tracing import Tracing, use


class Counting(IdGenerator):
    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def generate_span_id(self) -> int:
        return next(self._ids)

    def generate_trace_id(self) -> int:
        return (next(self._ids) << 64) | 0xABCDEF


class RecordOnly(Sampler):
    """Records without sampling, and adds an attribute of its own."""

    def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> Any:
        return SamplingResult(Decision.RECORD_ONLY, {"sampler.says": name})

    def get_description(self) -> str:
        return "RecordOnly"


class Weird:
    def __str__(self) -> str:
        return "weird"


REMOTE_SAMPLED = SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "v")]),
)
REMOTE_UNSAMPLED = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(0))


def scenario(tracer: trace.Tracer) -> None:
    """The gateway's own use (server, strategy and client spans) and the API's corners."""
    remote = trace.set_span_in_context(NonRecordingSpan(REMOTE_SAMPLED))
    with tracer.start_as_current_span("server", context=remote, kind=SpanKind.SERVER, attributes={"a": 1}) as server:
        strategy = tracer.start_span("strategy", attributes={"s": "direct", "stream": False})
        with use(strategy):
            call = tracer.start_span("call", kind=SpanKind.CLIENT, attributes={"f": 0.5, "seq": ["stop", "length"]})
            call.set_attributes({"gen_ai.usage.input_tokens": 7, "n": None, "obj": Weird(), "": "no key"})
            call.set_attribute("error.type", "http_503")
            call.set_attribute("a", "again")  # moves to the end
            call.set_status(Status(StatusCode.ERROR, "HTTP 503"))
            call.end()
            call.set_attribute("late", 1)  # ignored: ended
            call.end()  # warned, ignored
        strategy.set_attributes({"ultra.calls": 1, "many": tuple(range(3)), "holes": ["a", None], "nested": [["a"]]})
        strategy.end()
        server.set_attribute("http.response.status_code", 200)
        server.add_event("an event", {"e": 1})
        server.add_event("another", timestamp=123)
    linked = tracer.start_span(
        "linked",
        context=trace.set_span_in_context(NonRecordingSpan(REMOTE_UNSAMPLED)),
        links=[Link(REMOTE_SAMPLED, {"l": 1})],
        attributes={f"k{i}": i for i in range(12)},
    )
    linked.add_link(REMOTE_UNSAMPLED, {"late": True})
    linked.update_name("linked, renamed")
    linked.end()
    unsampled_child = tracer.start_span(
        "under an unsampled remote parent", context=trace.set_span_in_context(NonRecordingSpan(REMOTE_UNSAMPLED))
    )
    unsampled_child.end()
    with pytest.raises(ValueError, match="boom"), tracer.start_as_current_span("raises"):
        raise ValueError("boom")
    long = tracer.start_span("long values", attributes={"text": "x" * 40, "texts": ["y" * 40]})
    long.end()


def finished(sampler: Sampler, make: Callable[[Any], trace.Tracer], limits: SpanLimits) -> Sequence[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=sampler, resource=Resource({"service.name": "s"}), id_generator=Counting(), span_limits=limits
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    scenario(make(provider.get_tracer("ultra_gateway")))
    return exporter.get_finished_spans()


def view(span: ReadableSpan) -> tuple[Any, ...]:
    return (
        span.name,
        span.context,
        span.context.trace_flags if span.context else None,
        span.parent,
        span.kind,
        dict(span.attributes or {}),
        list((span.attributes or {}).keys()),
        span.dropped_attributes,
        [(e.name, without_stack(e.attributes), e.timestamp == 123) for e in span.events],
        span.dropped_events,
        [(link.context, dict(link.attributes or {})) for link in span.links],
        span.dropped_links,
        (span.status.status_code, span.status.description),
        span.resource,
        span.instrumentation_scope,
    )


def without_stack(attributes: Any) -> dict[str, Any]:
    """The exception event's stack trace names the tracer's own frames."""
    return {k: "..." if k == "exception.stacktrace" else v for k, v in (attributes or {}).items()}


def without_times(spans: Sequence[ReadableSpan]) -> Any:
    message = encode_spans(spans)
    for resource_spans in message.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                span.start_time_unix_nano = span.end_time_unix_nano = 1
                for event in span.events:
                    if event.time_unix_nano != 123:
                        event.time_unix_nano = 1
                    for attribute in event.attributes:
                        if attribute.key == "exception.stacktrace":
                            attribute.value.string_value = "..."
    return message


@pytest.mark.parametrize(
    "sampler",
    [DEFAULT_ON, DEFAULT_OFF, ALWAYS_OFF, ParentBasedTraceIdRatio(0.5), RecordOnly()],
    ids=["default", "parent-based-off", "off", "ratio", "record-only"],
)
@pytest.mark.parametrize(
    "limits",
    [SpanLimits(), SpanLimits(max_span_attributes=5, max_events=1, max_links=1, max_span_attribute_length=10)],
    ids=["default-limits", "tight-limits"],
)
def test_the_light_tracer_leaves_what_the_sdk_tracer_leaves(sampler: Sampler, limits: SpanLimits) -> None:
    expected = finished(sampler, lambda tracer: tracer, limits)
    light = finished(sampler, LightTracer, limits)
    assert [view(s) for s in light] == [view(s) for s in expected]
    assert without_times(light) == without_times(expected)
    assert all(isinstance(s, LightSpan) for s in light)
    assert all(s.start_time and s.end_time and s.start_time <= s.end_time for s in light)


def test_the_gateway_tracing_uses_the_light_tracer() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter), "svc")
    assert isinstance(tracing.tracer, LightTracer)
    with tracing.server_span("GET", {}, {"http.request.method": "GET"}) as server:
        assert server is not None
        child = tracing.start_span("child", {})
        assert child is not None
        child.end()
    [first, second] = exporter.get_finished_spans()
    assert first.parent is not None
    assert first.parent.span_id == second.context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # the server span is no longer current
    tracing.shutdown()
