"""Tracing from the standard OTEL_* environment, and nothing at all without it.

Enabled when `OTEL_TRACES_EXPORTER` is `otlp` or `console`, or an OTLP endpoint variable is set, and
`OTEL_SDK_DISABLED` is not `true`. Export is OTLP/HTTP protobuf from the OTEL_EXPORTER_OTLP_* variables, by the
gateway's own encoder and kept-alive connection (telemetry/_export.py; the SDK's OTLPSpanExporter for the few
settings it does not support), from a batching thread (batches of 128 spans unless
OTEL_BSP_MAX_EXPORT_BATCH_SIZE says otherwise), so spans never delay a response; `console` prints spans for
local debugging.
The sampler is the SDK's, from `OTEL_TRACES_SAMPLER` (default parent-based always-on).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any

from opentelemetry import context, trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.telemetry._batch import BatchExport
from gateway.telemetry._export import OtlpHttpExporter
from gateway.telemetry._spans import LightTracer

__all__ = ["Tracing", "trace_id_from_traceparent"]

log = logging.getLogger("ultra_gateway")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_id_from_traceparent(value: str | None) -> str | None:
    match = _TRACEPARENT.match(value or "")
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


def _wanted(env: Mapping[str, str]) -> str | None:
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    exporter = env.get("OTEL_TRACES_EXPORTER", "").lower()
    if exporter in ("console", "otlp"):
        return exporter
    if exporter == "none":
        return None
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


class Tracing:
    """The gateway's tracer, or None when tracing is off (then every helper here is a no-op)."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self.tracer: trace.Tracer | None = None
        if provider is not None:
            tracer = provider.get_tracer("ultra_gateway")
            self.tracer = LightTracer(tracer) if isinstance(tracer, SdkTracer) else tracer

    @classmethod
    def from_env(cls, service_name: str, *, env: Mapping[str, str] | None = None) -> Tracing:
        env = os.environ if env is None else env
        kind = _wanted(env)
        if kind is None:
            return cls(None)
        exporter: SpanExporter | None = None
        if kind == "console":
            exporter = ConsoleSpanExporter()
        else:
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol and protocol != "http/protobuf":
                log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; exporting OTLP/HTTP protobuf", protocol)
            exporter = OtlpHttpExporter.from_env(env)
            if exporter is None:  # a setting only the SDK's exporter supports (see telemetry/_export.py)
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                exporter = OTLPSpanExporter()
        # Smaller batches than the SDK's 512 unless configured: an export holds the GIL while it encodes, which
        # shows in the loop's p99. Measured at 200 req/s with Redis and tracing on (added p99): 512 spans 10-14 ms,
        # 128 spans 4-9 ms, 32 spans 3.5-5 ms but ~10 % fewer requests per CPU-second (one POST per 32 spans).
        processor = BatchExport.from_env(exporter, env, max_batch=128)
        return cls.with_processor(processor, env.get("OTEL_SERVICE_NAME") or service_name)

    @classmethod
    def with_processor(cls, processor: SpanProcessor, service_name: str) -> Tracing:
        resource = Resource.create({"service.name": service_name})
        provider = TracerProvider(resource=_HashedOnce(resource.attributes, resource.schema_url))
        provider.add_span_processor(processor)
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()  # flushes the last batch

    def server_span(
        self, name: str, headers: Mapping[str, str], attributes: dict[str, Any]
    ) -> AbstractContextManager[Span | None]:
        """The HTTP SERVER span, continuing an incoming W3C traceparent; current inside the `with`, ended on exit."""
        if self.tracer is None:
            return nullcontext()
        parent = extract(headers) if headers else None  # a new trace without the propagators' work
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        return _Current(span, record_exception=False, end_on_exit=True)

    def start_span(self, name: str, attributes: dict[str, Any]) -> Span | None:
        """An INTERNAL span under the current one; the caller ends it (it may outlive a `with` block)."""
        if self.tracer is None:
            return None
        return self.tracer.start_span(name, attributes=attributes)


class _HashedOnce(Resource):
    """The process's resource with its hash computed once. The OTLP encoder groups every exported span by its
    resource, and the SDK's hash JSON-dumps the attributes each time: about a tenth of the encoding's CPU."""

    def __init__(self, attributes: Any, schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def fail(span: Span, kind: str, description: str) -> None:
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, description))


def use(span: Span | None) -> AbstractContextManager[Span | None]:
    """Make `span` current for a block (nothing when tracing is off)."""
    if span is None:
        return nullcontext()
    return _Current(span, record_exception=True, end_on_exit=False)


class _Current:
    """What `trace.use_span` does, as a class rather than a generator (cheaper to enter on every request): the span
    is current inside the block; an exception leaving it is recorded as an event (if asked) and sets the ERROR
    status; the span ends on exit if asked."""

    __slots__ = ("_end", "_record", "_token", "span")

    def __init__(self, span: Span, *, record_exception: bool, end_on_exit: bool) -> None:
        self.span = span
        self._record = record_exception
        self._end = end_on_exit

    def __enter__(self) -> Span:
        self._token = context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        context.detach(self._token)
        span = self.span
        if isinstance(exc, Exception) and span.is_recording():  # as use_span: not for CancelledError and the like
            if self._record:
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        if self._end:
            span.end()
