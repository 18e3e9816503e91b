"""The raw ASGI steps every hot inbound route shares (chat, Messages, Responses, embeddings): one app per path
that picks the handler by method, authenticates before the body is read, renders a failure before the first
byte in the route's own error shape; reading a bounded JSON body; sending JSON; relaying until the client
hangs up; and answering under the request watchdog (`Inbound.whole` / `Inbound.stream`).

Under the watchdog everything after the body is read, writing to the client included, ends within the request
deadline plus a short grace: the pipeline stops itself at the deadline, so the watchdog fires only for a client
that does not read (its answer is abandoned and the upstream closed), for a client that hung up on a whole
answer (its upstream calls are cancelled), or when a graceful shutdown's grace runs out (the request ends with a
`service_unavailable` error, an error event on a stream).

These routes are served by the edge directly rather than through Litestar: its guard, signature, response and
middleware layers cost about a quarter of a request's CPU and do nothing these routes need.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.auth import ANONYMOUS, Principal
from gateway.core.errors import GatewayError, InvalidRequest, MethodNotAllowed, PayloadTooLarge, UpstreamTimeout
from gateway.http.caller import caller_of
from gateway.http.edge import ASGIApp, Receive, Scope, Send
from gateway.http.errors import unexpected
from gateway.http.render import encode
from gateway.http.server import shutting_down
from gateway.http.state import RequestState, state_of
from gateway.http.watchdog import WATCHDOG
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

log = logging.getLogger("ultra_gateway")

_JSON = (b"content-type", b"application/json")
_LAST_WRITE_GRACE_S = 1.0  # writing may finish this long after the deadline (the pipeline stops at it)
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
    def started(self) -> bool:
        """The response has started: too late for an error status."""
        return self.state.status != 0

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

    def _within(self) -> float:
        return self.gateway.settings.server.request_timeout_s + _LAST_WRITE_GRACE_S

    async def whole(self, work: Awaitable[None]) -> None:
        """Compute and send a whole answer under the watchdog; a client hanging up cancels the upstream calls."""
        guard = WATCHDOG.guard(self._within(), self.receive)
        try:
            await work
        except asyncio.CancelledError:
            if guard.fired is None:
                raise
            guard.task.uncancel()
            if guard.fired == "hangup":
                self.state.hung_up = True
                return  # nobody to answer; the upstream calls were cancelled
            if self.started:  # the answer was ready; the client did not take it
                log.warning("request %s: the client did not read its answer before the deadline", self.request_id)
                return
            if guard.fired == "drain":
                raise shutting_down() from None
            raise UpstreamTimeout("The request did not finish within its deadline.") from None
        finally:
            WATCHDOG.release(guard)

    async def stream(self, work: Awaitable[None], error_event: Callable[[GatewayError], bytes]) -> None:
        """Open and relay a stream under the watchdog (hang-ups end it at once through `until_disconnect`). When
        a shutdown ends it after it started, the client is told why with `error_event`."""
        guard = WATCHDOG.guard(self._within())
        try:
            await work
        except asyncio.CancelledError:
            if guard.fired is None:
                raise
            guard.task.uncancel()
            if not self.started:
                if guard.fired == "drain":
                    raise shutting_down() from None
                raise UpstreamTimeout("The request did not finish within its deadline.") from None
            if guard.fired != "drain":
                log.warning("request %s: the client did not read its stream before the deadline", self.request_id)
                return
            try:  # the upstream stream is closed already; tell the client why its stream ends here
                async with asyncio.timeout(_LAST_WRITE_GRACE_S / 2):
                    body = error_event(shutting_down())
                    await self.send({"type": "http.response.body", "body": body, "more_body": False})
            except TimeoutError:
                log.warning("request %s: the client did not read the end of its stream", self.request_id)
        finally:
            WATCHDOG.release(guard)


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
        state = state_of(scope)
        try:
            handler = handlers.get(scope["method"])
            if handler is None:
                raise MethodNotAllowed(f"Only {', '.join(allowed)} is allowed on {scope['path']}.", allowed=allowed)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            state.principal = authenticate(gateway, headers)
            await handler(Inbound(gateway, scope, receive, send, headers, state))
        except Exception as exc:
            if state.status:  # the response started (the edge records it): too late for an error response
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


class _HangUp:
    """Cancels the serving task when the client hangs up, so the upstream streams are closed at once rather than
    read to their end into a dead socket. It watches from the sender's first wait for the upstream on: a stream
    whose events are all ready is sent at once and needs no watcher (a task per stream)."""

    __slots__ = ("_receive", "_watcher", "hung_up", "task")

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self._receive = receive
        self._watcher: asyncio.Future[None] | None = None
        self.hung_up = False

    def watch(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.hung_up = True
        self.task.cancel()

    def stop(self) -> None:
        # Forgotten as it is cancelled: the cancelled task keeps its CancelledError, whose traceback holds the
        # `_watch` frame and so this object (a cycle that only the garbage collector would free).
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()


async def until_disconnect(work: Callable[[Callable[[], None]], Awaitable[None]], receive: Receive) -> None:
    """Run `work(watch)` until it ends or the client hangs up, whichever is first. `work` calls `watch()` before
    it first waits for the upstream; from then on a hang-up cancels it, so the upstream streams are closed at once
    rather than read to their end into a dead socket."""
    hang_up = _HangUp(receive)
    try:
        await work(hang_up.watch)
    except asyncio.CancelledError:
        if not hang_up.hung_up:
            raise  # cancelled from outside (server shutdown): not ours to swallow
        hang_up.task.uncancel()
    finally:
        hang_up.stop()
