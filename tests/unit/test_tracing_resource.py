"""The process's resource, as spans carry it to the exporter: the SDK's attributes, hash and equality, with the
hash computed once instead of for every exported span."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.telemetry.tracing import Tracing


def test_spans_carry_the_service_resource_hashed_once() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter), "svc-under-test")
    span = tracing.start_span("one", {})
    assert span is not None
    span.end()
    (finished,) = exporter.get_finished_spans()
    resource = finished.resource
    assert resource.attributes["service.name"] == "svc-under-test"
    same = Resource(resource.attributes, resource.schema_url)
    assert resource == same
    assert hash(resource) == hash(same)  # what the encoder groups by is unchanged
    assert type(resource).__hash__ is not Resource.__hash__  # and not recomputed per span
    tracing.shutdown()
