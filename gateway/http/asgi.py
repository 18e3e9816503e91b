"""The raw ASGI steps every hot inbound route shares (chat, Messages, Responses, embeddings): one app per path
that picks the handler by method, authenticates before the body is read, renders a failure before the first
byte in the route's own error shape; reading a bounded JSON body; sending JSON; relaying until the client
hangs up.

These routes are served by the edge directly rather than through Litestar: its guard, signature, response and
middleware layers cost about a quarter of a request's CPU and do nothing these routes need.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.auth import ANONYMOUS, Principal
from gateway.core.errors import GatewayError, InvalidRequest, MethodNotAllowed, PayloadTooLarge
from gateway.http.caller import caller_of
from gateway.http.edge import ASGIApp, Message, Receive, Scope, Send
from gateway.http.errors import unexpected
from gateway.http.render import encode
from gateway.http.state import RequestState, state_of
from gateway.pipeline import Caller
from gateway.service import Gateway

__all__ = [
    "SSE_HEADERS",
    "Handler",
    "Inbound",
    "Renderer",
    "raw_route",
    "read_json",
    "send_json",
    "until_disconnect",
]

_JSON = (b"content-type", b"application/json")
SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)

Renderer = Callable[[GatewayError], tuple[int, bytes, dict[str, str]]]
"""An error → (status, body, headers) in the route's own error shape."""

Authenticate = Callable[[Gateway, dict[str, str]], Principal]


@dataclass(slots=True)
class Inbound:
    """One authenticated request on a raw route: what its handler needs."""

    gateway: Gateway
    scope: Scope
    receive: Receive
    send: Send
    headers: dict[str, str]
    state: RequestState

    @property
    def request_id(self) -> str:
        return self.state.request_id

    @property
    def principal(self) -> Principal:
        return self.state.principal or ANONYMOUS

    def caller(self, model: str) -> Caller:
        """The pipeline's view of the caller; also names the model for the access line."""
        return caller_of(self.state, self.headers, model)

    async def json(self) -> Any:
        return await read_json(
            self.receive, self.headers.get("content-length"), self.gateway.settings.server.max_body_bytes
        )


Handler = Callable[[Inbound], Awaitable[None]]


def _bearer(gateway: Gateway, headers: dict[str, str]) -> Principal:
    return gateway.auth.authenticate(headers.get("authorization"))


def raw_route(
    gateway: Gateway, handlers: dict[str, Handler], render: Renderer, *, authenticate: Authenticate = _bearer
) -> ASGIApp:
    """An ASGI app for one path: the handler for the method (405 otherwise), authentication (401 before the
    body is read), and any failure before the first byte rendered with `render`."""
    allowed = tuple(handlers)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        state = state_of(scope)
        try:
            handler = handlers.get(scope["method"])
            if handler is None:
                raise MethodNotAllowed(f"Only {', '.join(allowed)} is allowed on {scope['path']}.", allowed=allowed)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            state.principal = authenticate(gateway, headers)
            await handler(Inbound(gateway, scope, receive, sending, headers, state))
        except Exception as exc:
            if started:  # too late for an error response: the server closes the connection
                raise
            error = exc if isinstance(exc, GatewayError) else unexpected(state.request_id, exc)
            status, body, extra = render(error)
            await send_json(send, status, body, extra)

    return app


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
        return orjson.loads(parts[0] if len(parts) == 1 else b"".join(parts))
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request.") from None


async def send_json(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    start = [_JSON, (b"content-length", b"%d" % len(raw)), *encode(headers or {})]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": raw, "more_body": False})


async def until_disconnect(sending: Coroutine[Any, Any, None], receive: Receive) -> None:
    """Run the sender until it ends or the client hangs up, whichever is first. A hang-up cancels the sender, so
    the upstream streams are closed at once rather than read to their end into a dead socket."""
    me = asyncio.current_task()
    assert me is not None
    hung_up = False

    async def watch() -> None:
        nonlocal hung_up
        while (await receive())["type"] != "http.disconnect":
            pass
        hung_up = True
        me.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        await sending
    except asyncio.CancelledError:
        if not hung_up:
            raise  # cancelled from outside (server shutdown): not ours to swallow
        me.uncancel()
    finally:
        watcher.cancel()
