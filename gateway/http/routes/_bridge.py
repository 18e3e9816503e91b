"""What every inbound API besides chat shares: the glue that runs a ChatRequest through the pipeline
(`Gateway.complete` / `Gateway.stream`, exactly as the chat route calls them; and, for embeddings, the one
deployment call with its admission and settlement) and the few ASGI steps around it
(authenticate, read a JSON body, send JSON, relay an event stream until the client hangs up).

The Messages, Responses and Embeddings routes are raw ASGI apps served by the edge, like the chat route, so they
cost no more per request; each translates its own wire format with a pure dialect (`gateway/dialects/`) and
calls `complete` or `streamed` here. This is the one module that knows the pipeline's call shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.auth import Principal
from gateway.core.errors import GatewayError, InvalidRequest, MethodNotAllowed, PayloadTooLarge
from gateway.core.provider import CallOptions, Embedder
from gateway.core.types import ChatRequest, Chunk
from gateway.dialects.embeddings import token_estimate_body
from gateway.http.edge import ASGIApp, Message, Receive, Scope, Send
from gateway.http.errors import internal, unexpected
from gateway.http.routes.chat import _until_disconnect
from gateway.ratelimit.limiter import key_rule
from gateway.service import Gateway, RequestContext

__all__ = [
    "Answer",
    "Handler",
    "Inbound",
    "Renderer",
    "Streamed",
    "complete",
    "embed",
    "raw_route",
    "read_json",
    "send_json",
    "send_stream",
    "streamed",
]

log = logging.getLogger("ultra_gateway")

_JSON = (b"content-type", b"application/json")

Renderer = Callable[[GatewayError], tuple[int, bytes, dict[str, str]]]
"""An error → (status, body, headers) in the route's own error shape."""


@dataclass(slots=True)
class Inbound:
    """One request on an inbound route, authenticated: what the route and the pipeline need to know of it."""

    gateway: Gateway
    scope: Scope
    receive: Receive
    send: Send
    headers: dict[str, str]
    principal: Principal

    @property
    def request_id(self) -> str:
        return str(self.scope.get("ultra.request_id", ""))

    def context(self, model: str) -> RequestContext:
        """The pipeline's view of the caller; also names the model and key for the access log line."""
        principal = self.principal
        key_name = None if principal.anonymous else principal.name
        self.scope["ultra.log"] = {"model": model, "key": key_name}  # read by the access log in the edge
        return RequestContext(
            request_id=self.request_id,
            trace_id=self.scope.get("ultra.trace_id"),
            key_name=key_name,
            hints={k: v for k, v in self.headers.items() if k.startswith("x-ultra-")},
            principal=principal,
            cache_control=self.headers.get("cache-control"),
            cache_ttl=self.headers.get("x-ultra-cache-ttl"),
        )

    async def json(self) -> Any:
        return await read_json(
            self.receive, self.headers.get("content-length"), self.gateway.settings.server.max_body_bytes
        )


Handler = Callable[[Inbound], Awaitable[None]]


@dataclass(slots=True)
class Answer:
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(slots=True)
class Streamed:
    chunks: AsyncIterator[Chunk]
    headers: dict[str, str]


def _log_meta(scope: Scope, meta: Any) -> None:
    line = scope.get("ultra.log")
    if isinstance(line, dict):
        line["meta"] = meta


async def complete(inbound: Inbound, chat: ChatRequest, rc: RequestContext) -> Answer:
    """A whole answer from the pipeline: the chat completion body (with `ultra` metadata when exposed) and the
    response headers (x-ultra-*, rate limits)."""
    outcome = await inbound.gateway.complete(chat, rc)
    _log_meta(inbound.scope, outcome.meta)
    return Answer(outcome.body, outcome.headers)


@asynccontextmanager
async def streamed(inbound: Inbound, chat: ChatRequest, rc: RequestContext) -> AsyncIterator[Streamed]:
    """The pipeline's stream, opened before anything is sent (a failure to open is an ordinary HTTP error);
    leaving it closes every upstream response."""
    async with AsyncExitStack() as stack:
        opened = await stack.enter_async_context(inbound.gateway.stream(chat, rc))
        _log_meta(inbound.scope, opened.meta)  # complete by the time the line is written, after the stream
        yield Streamed(opened.chunks, opened.headers)


async def embed(inbound: Inbound, body: dict[str, Any]) -> Answer:
    """An embeddings call to the one deployment the body names: authorized, admitted by the rate limits (its
    input as the token estimate), settled with the real usage, counted in `ultra_requests_total` (strategy
    `direct`). No strategy, no fallbacks: vectors from another model would not be comparable with the ones the
    client already has."""
    gateway = inbound.gateway
    model = str(body["model"])
    try:
        answer = await _embed(inbound, body, model)
    except GatewayError as exc:
        gateway.metrics.requests.inc((model, "direct", str(exc.status)))
        raise
    gateway.metrics.requests.inc((model, "direct", "200"))
    return answer


async def _embed(inbound: Inbound, body: dict[str, Any], model: str) -> Answer:
    gateway = inbound.gateway
    rc = inbound.context(model)
    gateway.auth.authorize(rc.principal, model)
    if model in gateway.strategies or model in gateway.settings.aliases:
        raise InvalidRequest(
            f"'{model}' is a strategy alias; embeddings need one deployment, named as provider/model", param="model"
        )
    deployment = gateway.pool.resolve(model)
    provider = deployment.provider
    if not provider.capabilities.embeddings or not isinstance(provider, Embedder):
        raise InvalidRequest(f"'{deployment.name}' does not serve embeddings", param="model")
    ticket = None
    if gateway.limiter is not None:
        rule = key_rule(rc.principal.name, rpm=rc.principal.rpm, tpm=rc.principal.tpm)
        ticket = await gateway.limiter.admit(key=rule, model=model, body=token_estimate_body(body))
    options = CallOptions(
        deadline=time.monotonic() + gateway.settings.server.request_timeout_s,
        request_id=rc.request_id,
        role="embeddings",
    )
    used: int | None = 0
    try:
        result = await provider.embed(body, model=deployment.model, options=options)
        usage = result.get("usage") or {}
        used = usage.get("total_tokens") if isinstance(usage.get("total_tokens"), int) else None
    except asyncio.CancelledError:
        used = None  # the client left: the call may still be billed, keep the estimate charged
        raise
    finally:
        if ticket is not None and gateway.limiter is not None:
            gateway.limiter.settle_soon(ticket, used)
    result["model"] = model
    headers = {"x-ultra-strategy": "direct", "x-ultra-providers": deployment.name, "x-ultra-cache": "bypass"}
    if ticket is not None:
        headers.update(ticket.headers)
    return Answer(result, headers)


async def read_json(receive: Receive, length: str | None, limit: int) -> Any:
    """The whole body, bounded by the configured limit, parsed as JSON (400 when it is not)."""
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge("The request body is larger than this gateway accepts")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("The client closed the connection before sending the whole body.")
        part: bytes = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise PayloadTooLarge("The request body is larger than this gateway accepts")
        parts.append(part)
        if not message.get("more_body", False):
            break
    try:
        return orjson.loads(b"".join(parts))
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request.") from None


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_json(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    start = [_JSON, (b"content-length", b"%d" % len(raw)), *_encode(headers or {})]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": raw, "more_body": False})


_SSE = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


async def send_stream(
    inbound: Inbound,
    headers: dict[str, str],
    events: AsyncIterator[bytes],
    on_error: Callable[[GatewayError], bytes],
) -> None:
    """Send already-framed SSE events as they come, until they end or the client hangs up. After the first
    byte a failure is one in-band error event (`on_error` frames it in the route's dialect) and the end."""
    send = inbound.send

    async def relay() -> None:
        tail = b""
        try:
            async for event in events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        except GatewayError as exc:
            tail = on_error(exc)
        except Exception:
            log.exception("stream failed in request %s", inbound.request_id)
            tail = on_error(internal(inbound.request_id))
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE, *_encode(headers)]})
    await _until_disconnect(relay(), inbound.receive)


def raw_route(
    gateway: Gateway,
    handlers: dict[str, Handler],
    render: Renderer,
    *,
    authenticate: Callable[[Gateway, dict[str, str]], Principal] | None = None,
) -> ASGIApp:
    """An ASGI app for one path: picks the handler by method (405 otherwise), authenticates (401 before the body
    is read), and renders any failure before the first byte with `render`."""
    auth = authenticate or (lambda g, h: g.auth.authenticate(h.get("authorization")))
    allowed = ", ".join(handlers)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            handler = handlers.get(scope["method"])
            if handler is None:
                raise MethodNotAllowed(f"Only {allowed} is allowed on {scope['path']}.", headers={"allow": allowed})
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            principal = auth(gateway, headers)
            await handler(Inbound(gateway, scope, receive, sending, headers, principal))
        except Exception as exc:
            if started:  # too late for an error response: the server closes the connection
                raise
            error = exc if isinstance(exc, GatewayError) else unexpected(str(scope.get("ultra.request_id", "")), exc)
            status, body, extra = render(error)
            await send_json(send, status, body, extra)

    return app
