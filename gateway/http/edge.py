"""The outermost ASGI layer: gives every HTTP request an id and puts `x-request-id` on every response, including
the framework's own 404s and errors (as OpenAI does); opens the HTTP SERVER span
(named by route template, never the raw path, and one span per request, not per SSE chunk) continuing an
incoming `traceparent`, and returns the trace id in `x-ultra-trace-id`."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson

from gateway.core.redaction import bounded
from gateway.core.types import random_hex
from gateway.http.state import RequestState, state_of
from gateway.telemetry.access import access_line
from gateway.telemetry.logs import iso_now
from gateway.telemetry.tracing import Tracing, fail, trace_id_from_traceparent

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["ASGIApp", "Message", "Receive", "RequestIdEdge", "Scope", "Send", "route_template"]

_CLIENT_ID = re.compile(rb"^[A-Za-z0-9_.:-]{1,128}$")
_ROUTES = (
    "/v1/chat/completions",
    "/v1/models",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/feedback",
    "/v1/usage",
)
_PROPAGATION = (b"traceparent", b"tracestate", b"baggage")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bounded(value.decode("latin-1"), 256)
    return None


def _access_line(scope: Scope, status: int, started: float) -> str:
    """One JSON line: when, from where, who (the key's name, never the key), what, how it went, what it cost."""
    state = state_of(scope)
    principal = state.principal
    meta = state.meta
    client = scope.get("client")
    line: dict[str, Any] = {
        "ts": iso_now(),
        "request_id": state.request_id,
        "trace_id": state.trace_id,
        "method": scope["method"],
        "route": route_template(scope["path"]),
        "status": status,
        "latency_ms": round((time.monotonic() - started) * 1000, 2),
        "client": client[0] if client else None,
        "user_agent": _header(scope, b"user-agent"),
        "key": None if principal is None or principal.anonymous else principal.name,
        "model": None if state.model is None else bounded(state.model),
        "tenant": None if principal is None else principal.tenant,
    }
    forwarded = _header(scope, b"x-forwarded-for")
    if forwarded is not None:
        line["forwarded_for"] = forwarded
    if meta is not None:
        line["strategy"] = meta.chosen_strategy or meta.strategy
        line["deployments"] = line["providers"] = meta.providers
        line["tokens"] = meta.usage.total_tokens
        line["cost_usd"] = round(meta.cost_usd, 10)
    return orjson.dumps(line).decode()


def route_template(path: str) -> str | None:
    if path in _ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model_id}"
    if path.startswith("/v1/responses/"):
        return "/v1/responses/{response_id}"
    return None  # unknown paths get no route: the span is named by the method alone (bounded cardinality)


class RequestIdEdge:
    """`app` serves every path but those in `routes` (raw ASGI apps, called directly)."""

    def __init__(self, app: Any, tracing: Tracing | None = None, routes: Mapping[str, ASGIApp] | None = None) -> None:
        self.app: ASGIApp = app  # a Litestar app (whose own scope types are narrower than this module's)
        self.tracing = tracing or Tracing(None)
        self.routes = dict(routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        try:
            await self._handle(scope, receive, send)
        finally:
            # After the response has gone out: the line never delays it (a writer thread, telemetry/access.py).
            # No response at all: the client hung up first (499, as nginx logs it), or the server failed (500).
            state = state_of(scope)
            code = state.status or (499 if state.hung_up else 500)
            access_line(_access_line(scope, code, started))

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope["headers"]
        given = next((v for k, v in headers if k == b"x-request-id"), None)
        request_id = given.decode() if given is not None and _CLIENT_ID.match(given) else f"req_{random_hex(32)}"
        state = RequestState(request_id).attach(scope)
        extra = [(b"x-request-id", request_id.encode())]
        app = self.routes.get(scope["path"], self.app)
        if not self.tracing.enabled:
            parent = next((v for k, v in headers if k == b"traceparent"), b"")
            trace_id = trace_id_from_traceparent(parent.decode("latin-1"))
            if trace_id is not None:  # no tracing here, but the caller's trace continues through us
                state.trace_id = trace_id
                extra.append((b"x-ultra-trace-id", trace_id.encode()))
            await app(scope, receive, self._sender(send, extra, None, state))
            return
        method = scope["method"]
        route = route_template(scope["path"])
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "ultra.request_id": request_id,
        }
        if route is not None:
            attributes["http.route"] = route
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in _PROPAGATION}
        with self.tracing.server_span(f"{method} {route}" if route else method, carrier, attributes) as span:
            assert span is not None
            trace_id = format(span.get_span_context().trace_id, "032x")
            state.trace_id = trace_id
            extra.append((b"x-ultra-trace-id", trace_id.encode()))
            await app(scope, receive, self._sender(send, extra, span, state))

    @staticmethod
    def _sender(send: Send, extra: list[tuple[bytes, bytes]], span: Any, state: RequestState) -> Send:
        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
                code = state.status = message["status"]
                if span is not None:
                    span.set_attribute("http.response.status_code", code)
                    if code >= 500:  # a 4xx (including a 429) is the client's, not an error of this server
                        fail(span, str(code), f"HTTP {code}")
            await send(message)

        return sender
