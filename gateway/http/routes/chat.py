"""`POST /v1/chat/completions`, streaming and not.

The hot route is a raw ASGI app that the edge calls directly (every other route is Litestar's): it
authenticates, reads the body and sends the answer as ASGI messages itself. Litestar's guard machinery,
signature model, response objects and middleware layers cost about a quarter of a request's CPU in a profile
(`python -m bench.profile`) and do nothing this route needs. Errors before the first byte are rendered by
http/errors.py, like every other route's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import orjson

from gateway.core.aio import start
from gateway.core.errors import GatewayError, InvalidRequest, MethodNotAllowed, PayloadTooLarge
from gateway.core.types import ChatRequest, Chunk, parse_chat_request
from gateway.http.edge import ASGIApp, Message, Receive, Scope, Send
from gateway.http.errors import error_event, internal, rendered, unexpected
from gateway.http.render import answer_headers, encode
from gateway.http.state import state_of
from gateway.pipeline import CacheDirectives, Caller
from gateway.service import Gateway

__all__ = ["chat_route"]

log = logging.getLogger("ultra_gateway")

_DONE = b"data: [DONE]\n\n"
_COALESCE_BYTES = 1 << 16  # ready events sent together, up to about this much
_JSON = (b"content-type", b"application/json")
_SSE = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


def chat_route(gateway: Gateway) -> ASGIApp:
    """The route as an ASGI app bound to the gateway; failures before the first byte are OpenAI errors."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await _chat_completions(gateway, scope, receive, sending)
        except Exception as exc:
            if started:  # too late for an error response: the server closes the connection
                raise
            error = exc if isinstance(exc, GatewayError) else unexpected(state_of(scope).request_id, exc)
            await _send_json(send, *rendered(error))

    return app


async def _chat_completions(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["method"] != "POST":
        raise MethodNotAllowed("Only POST is allowed on /v1/chat/completions.", allowed=("POST",))
    state = state_of(scope)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    state.principal = gateway.auth.authenticate(headers.get("authorization"))  # 401 before the body is read
    chat = await _read_request(receive, headers.get("content-length"), gateway.settings.server.max_body_bytes)
    state.model = chat.model
    caller = Caller(
        request_id=state.request_id,
        principal=state.principal,
        trace_id=state.trace_id,
        hints=_hints(headers),
        cache=_cache_directives(headers),
    )
    pipeline = gateway.pipeline
    if not chat.stream:
        answer = await pipeline.complete(chat, caller)
        state.meta = answer.meta
        await _send_json(send, 200, orjson.dumps(answer.body), answer_headers(answer.meta, answer.cache, answer.limits))
        return
    # Open the strategy's stream before answering: a failure to start is an ordinary HTTP error with its status.
    stack = AsyncExitStack()
    try:
        opened = await stack.enter_async_context(pipeline.stream(chat, caller))
    except BaseException:
        await stack.aclose()
        raise
    state.meta = opened.meta  # complete by the time the line is written, after the stream
    async with stack:  # closes every upstream response, also when the client went away
        rendered_headers = encode(answer_headers(opened.meta, opened.cache, opened.limits))
        await send({"type": "http.response.start", "status": 200, "headers": [*_SSE, *rendered_headers]})
        await _until_disconnect(opened.chunks, send, receive, caller.request_id)


_HINT_PREFIX = "x-ultra-"
_CACHE_TTL = "x-ultra-cache-ttl"


def _hints(headers: dict[str, str]) -> dict[str, str]:
    """`x-ultra-NAME: value` routing hints (e.g. `x-ultra-priority`) as {NAME: value}; the cache's own are not
    hints."""
    return {
        k.removeprefix(_HINT_PREFIX): v
        for k, v in headers.items()
        if k.startswith(_HINT_PREFIX) and not k.startswith("x-ultra-cache")
    }


def _cache_directives(headers: dict[str, str]) -> CacheDirectives:
    """`Cache-Control: no-cache` (skip the read) or `no-store` (skip read and write), and `x-ultra-cache-ttl`;
    a malformed TTL is a 400, before any quota is spent."""
    directives = {d.strip().lower() for d in headers.get("cache-control", "").split(",")}
    no_store = "no-store" in directives
    ttl: float | None = None
    raw = headers.get(_CACHE_TTL)
    if raw is not None:
        try:
            ttl = float(raw)
        except ValueError:
            ttl = -1.0
        if not ttl >= 0 or ttl == float("inf"):
            raise InvalidRequest(f"{_CACHE_TTL} must be a number of seconds >= 0", param=_CACHE_TTL)
    return CacheDirectives(read=not (no_store or "no-cache" in directives), write=not no_store, ttl_s=ttl)


async def _read_request(receive: Receive, length: str | None, limit: int) -> ChatRequest:
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
        body = orjson.loads(parts[0] if len(parts) == 1 else b"".join(parts))
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request.") from None
    return parse_chat_request(body)


async def _send_json(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [_JSON, (b"content-length", b"%d" % len(body)), *encode(headers)]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_events(
    chunks: AsyncIterator[Chunk], send: Send, request_id: str, before_wait: Callable[[], None] | None = None
) -> None:
    """Each chunk serialized once and sent as soon as it is ready, never held for a later one: the chunks that
    are ready together (decoded from one upstream read) go out in one message, one socket write instead of one
    per event. `before_wait` is called before each wait for a chunk. After the first byte, a failure is one error
    event and the end."""
    dumps = orjson.dumps
    iterator = chunks.__aiter__()
    ready: list[bytes] = []  # events ready and not sent yet
    size = 0
    try:
        while True:
            done, chunk = start(iterator.__anext__())
            if not done or size > _COALESCE_BYTES:
                if ready:
                    try:
                        await send({"type": "http.response.body", "body": b"".join(ready), "more_body": True})
                    except BaseException:
                        if not done:
                            chunk.close()  # type: ignore[union-attr]
                        raise
                    ready, size = [], 0
                if not done:
                    if before_wait is not None:
                        before_wait()
                    chunk = await chunk  # type: ignore[misc]
            event = b"data: " + dumps(chunk) + b"\n\n"
            ready.append(event)
            size += len(event)
    except StopAsyncIteration:
        tail = _DONE
    except GatewayError as exc:
        tail = error_event(exc)
    except Exception:
        log.exception("stream failed in request %s", request_id)
        tail = error_event(internal(request_id))
    ready.append(tail)
    await send({"type": "http.response.body", "body": b"".join(ready), "more_body": False})


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
        if self._watcher is not None:
            self._watcher.cancel()


async def _until_disconnect(chunks: AsyncIterator[Chunk], send: Send, receive: Receive, request_id: str) -> None:
    """Send the events until they end or the client hangs up, whichever is first."""
    hang_up = _HangUp(receive)
    try:
        await _send_events(chunks, send, request_id, before_wait=hang_up.watch)
    except asyncio.CancelledError:
        if not hang_up.hung_up:
            raise  # cancelled from outside (server shutdown): not ours to swallow
        hang_up.task.uncancel()
    finally:
        hang_up.stop()
