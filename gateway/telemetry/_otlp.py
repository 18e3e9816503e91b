"""OTLP protobuf for finished spans, written by hand: the bytes of an `ExportTraceServiceRequest` with the same
fields the SDK's encoder sets (tests decode both and compare), without building a message object per span,
attribute and value first. Keys, resources and scopes are encoded once; a string attribute seen before (the
model, the provider, the route) is one dictionary lookup.

Field numbers are those of opentelemetry/proto/{trace,common,resource}/v1 and
collector/trace/v1/trace_service.proto. proto3 leaves out scalars holding their default (0, "", empty bytes),
but a value inside AnyValue's oneof and a set sub-message are always written, as the SDK's encoder does.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status

__all__ = ["SpanEncoder"]

log = logging.getLogger("ultra_gateway")

_SMALL = [bytes((n,)) for n in range(128)]
_Q = struct.Struct("<Q").pack  # fixed64
_I = struct.Struct("<I").pack  # fixed32
_D = struct.Struct("<d").pack  # double
_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
_HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_SPAN_FLAGS = {False: b"\x85\x01" + _I(_HAS_IS_REMOTE), True: b"\x85\x01" + _I(_HAS_IS_REMOTE | _IS_REMOTE)}  # field 16
_LINK_FLAGS = {False: b"\x35" + _I(_HAS_IS_REMOTE), True: b"\x35" + _I(_HAS_IS_REMOTE | _IS_REMOTE)}  # field 6
_SCALARS = frozenset({str, int, float, bool})
_INT64 = (-(1 << 63), (1 << 63) - 1)
_CACHE_LIMIT = 4096  # encoded (key, string value) pairs kept; cleared when full, so it stays bounded


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 127:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else _varint(n)) + payload


def _value(value: Any) -> bytes:
    """An AnyValue's payload, as the SDK's `_encode_value` builds it (bool before int: bool is an int)."""
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"{value} does not fit an int64")
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _D(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _value(v)) for v in value]))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join([_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    return _field(b"\x0a", key.encode()) + _field(b"\x12", _value(value))


class _Attributes:
    """Encodes attribute maps into repeated KeyValue fields under one tag, remembering what repeats: a scalar
    is remembered with its type (1, 1.0 and True are equal keys in a dict, not in protobuf), a float unless it
    is a zero (0.0 and -0.0 are equal too)."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[bytes, str, Any, type], bytes] = {}

    def encode(self, tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
        if not attributes:
            return []
        out = []
        pairs = self._pairs
        for key, value in attributes.items():
            kind = type(value)
            remember = kind in _SCALARS and (kind is not float or value != 0)
            if remember:
                encoded = pairs.get((tag, key, value, kind))
                if encoded is not None:
                    out.append(encoded)
                    continue
            try:
                encoded = _field(tag, _key_value(key, value))
            except Exception as error:  # what the SDK's encoder does: the attribute is left out, the span kept
                log.exception("Failed to encode key %s: %s", key, error)
                continue
            if remember:
                if len(pairs) >= _CACHE_LIMIT:
                    pairs.clear()
                pairs[(tag, key, value, kind)] = encoded
            out.append(encoded)
        return out

    def status(self, status: Status) -> bytes:
        """Field 15 (always written, as the SDK's encoder does); UNSET is by far the most common."""
        code = status.status_code.value
        description = status.description
        if not code and not description:
            return b"\x7a\x00"
        key = (b"status", description or "", code, int)
        encoded = self._pairs.get(key)
        if encoded is None:
            encoded = _field(b"\x7a", _field_str(b"\x12", description) + (b"\x18" + _SMALL[code] if code else b""))
            if len(self._pairs) >= _CACHE_LIMIT:
                self._pairs.clear()
            self._pairs[key] = encoded
        return encoded


def _trace_state(context: SpanContext) -> bytes:
    state = context.trace_state
    return _field(b"\x1a", ",".join([f"{key}={value}" for key, value in state.items()]).encode())


class SpanEncoder:
    """`encode(spans)` → the serialized ExportTraceServiceRequest, spans grouped by resource, then by scope,
    in the order they come (as the SDK groups them)."""

    def __init__(self) -> None:
        self._attributes = _Attributes()
        self._resources: dict[Resource, bytes] = {}
        self._scopes: dict[InstrumentationScope | None, bytes] = {}

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        groups: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
        for span in spans:
            scopes = groups.get(span.resource)
            if scopes is None:
                scopes = groups[span.resource] = {}
            scope = span.instrumentation_scope or None
            encoded = scopes.get(scope)
            if encoded is None:
                encoded = scopes[scope] = []
            encoded.append(_field(b"\x12", self.span(span)))
        out = []
        for resource, scopes in groups.items():
            body = [self._resource(resource)]
            for scope, encoded in scopes.items():
                body.append(_field(b"\x12", self._scope(scope) + b"".join(encoded) + _schema(scope)))
            out.append(_field(b"\x0a", b"".join(body) + _field_str(b"\x1a", resource.schema_url)))
        return b"".join(out)

    def span(self, span: ReadableSpan) -> bytes:
        context = span.get_span_context()
        assert context is not None
        parent = span.parent
        attributes = self._attributes.encode
        parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08", context.span_id.to_bytes(8, "big")]
        if context.trace_state:
            parts.append(_trace_state(context))
        if parent is not None:
            parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
        name = span.name.encode()
        parts += (b"\x2a", _SMALL[len(name)] if len(name) < 128 else _varint(len(name)), name, _KIND[span.kind])
        start, end = span.start_time, span.end_time
        if start:
            parts += (b"\x39", _Q(start))
        if end:
            parts += (b"\x41", _Q(end))
        parts += attributes(b"\x4a", span.attributes)
        events, links = span.events, span.links
        for event in events:
            event_parts = [b"\x09", _Q(event.timestamp)] if event.timestamp else []
            event_parts.append(_field_str(b"\x12", event.name))
            event_parts += attributes(b"\x1a", event.attributes)
            event_parts.append(_count(b"\x20", event.dropped_attributes))
            parts.append(_field(b"\x5a", b"".join(event_parts)))
        for link in links:
            link_parts = [
                b"\x0a\x10",
                link.context.trace_id.to_bytes(16, "big"),
                b"\x12\x08",
                link.context.span_id.to_bytes(8, "big"),
            ]
            link_parts += attributes(b"\x22", link.attributes)
            link_parts += (_count(b"\x28", link.dropped_attributes), _LINK_FLAGS[bool(link.context.is_remote)])
            parts.append(_field(b"\x6a", b"".join(link_parts)))
        dropped = span.dropped_attributes
        if dropped:
            parts.append(b"\x50" + _varint(dropped))
        parts += (_count(b"\x60", span.dropped_events), _count(b"\x70", span.dropped_links))
        parts += (self._attributes.status(span.status), _SPAN_FLAGS[parent is not None and bool(parent.is_remote)])
        return b"".join(parts)

    def _resource(self, resource: Resource) -> bytes:
        encoded = self._resources.get(resource)
        if encoded is None:
            attributes = b"".join(self._attributes.encode(b"\x0a", resource.attributes))
            encoded = self._resources[resource] = _field(b"\x0a", attributes)
        return encoded

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        encoded = self._scopes.get(scope)
        if encoded is None:
            body = b""
            if scope is not None:
                body = _field_str(b"\x0a", scope.name) + _field_str(b"\x12", scope.version)
                body += b"".join(self._attributes.encode(b"\x1a", scope.attributes))
            encoded = self._scopes[scope] = _field(b"\x0a", body)
        return encoded


def _field_str(tag: bytes, value: str | None) -> bytes:
    return _field(tag, value.encode()) if value else b""


def _count(tag: bytes, n: int) -> bytes:
    return tag + _varint(n) if n else b""


def _schema(scope: InstrumentationScope | None) -> bytes:
    return _field_str(b"\x1a", scope.schema_url) if scope is not None else b""
