"""`POST /v1/chat/completions`, streaming and not (SPEC §2, reference §5).

The hot route is a raw ASGI app that the edge calls directly (every other route is Litestar's): it
authenticates, reads the body and sends the answer as ASGI messages itself. Litestar's guard machinery,
signature model, response objects and middleware layers cost about a quarter of a request's CPU in a profile
(`python -m bench.profile`) and do nothing this route needs. Errors before the first byte are rendered by
http/errors.py, like every other route's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import orjson

from gateway.core.errors import GatewayError, InvalidRequest, MethodNotAllowed, PayloadTooLarge, UpstreamTimeout
from gateway.core.redaction import bounded
from gateway.core.types import ChatRequest, Chunk, parse_chat_request
from gateway.http.edge import ASGIApp, Message, Receive, Scope, Send
from gateway.http.errors import error_event, internal, rendered, unexpected
from gateway.http.server import shutting_down
from gateway.http.watchdog import WATCHDOG
from gateway.service import Gateway, RequestContext

__all__ = ["chat_route"]

log = logging.getLogger("ultra_gateway")

T = TypeVar("T")

_DONE = b"data: [DONE]\n\n"
_LAST_WRITE_GRACE_S = 1.0  # writing may finish this long after the deadline (the pipeline stops at it)
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
            error = exc if isinstance(exc, GatewayError) else unexpected(str(scope.get("ultra.request_id", "")), exc)
            await _send_json(send, *rendered(error))

    return app


async def _chat_completions(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["method"] != "POST":
        raise MethodNotAllowed("Only POST is allowed on /v1/chat/completions.", headers={"allow": "POST"})
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    principal = gateway.auth.authenticate(headers.get("authorization"))  # 401 before the body is read
    chat = await _read_request(receive, headers.get("content-length"), gateway.settings.server.max_body_bytes)
    rc = RequestContext(
        request_id=str(scope.get("ultra.request_id", "")),
        trace_id=scope.get("ultra.trace_id"),
        key_name=None if principal.anonymous else principal.name,
        hints={k: v for k, v in headers.items() if k.startswith("x-ultra-")},
        principal=principal,
        cache_control=headers.get("cache-control"),
        cache_ttl=headers.get("x-ultra-cache-ttl"),
    )
    line: dict[str, Any] = {"model": bounded(chat.model), "key": rc.key_name}
    scope["ultra.log"] = line  # read by the access log in the edge
    # The watchdog bounds everything after this point, writing to the client included: the pipeline stops
    # itself at the request deadline, so this fires only when the client is not reading (after a short grace),
    # or earlier when a graceful shutdown's grace runs out.
    end = asyncio.get_running_loop().time() + gateway.settings.server.request_timeout_s + _LAST_WRITE_GRACE_S
    if chat.stream:
        await _answer_stream(gateway, chat, rc, line, receive, send, end)
    else:
        await _answer_whole(gateway, chat, rc, line, receive, send, end)


async def _answer_whole(
    gateway: Gateway,
    chat: ChatRequest,
    rc: RequestContext,
    line: dict[str, Any],
    receive: Receive,
    send: Send,
    end: float,
) -> None:
    guard = WATCHDOG.guard(end, receive)  # a hang-up cancels the upstream calls, as it does for streams
    outcome = None
    try:
        outcome = await gateway.complete(chat, rc)
        line["meta"] = outcome.meta
        await _send_json(send, 200, orjson.dumps(outcome.body), outcome.headers)
    except asyncio.CancelledError:
        if guard.fired is None:
            raise
        guard.task.uncancel()
        if guard.fired == "hangup":
            return  # nobody to answer; the upstream calls were cancelled
        if outcome is not None:  # the answer was ready; the client did not take it
            log.warning("request %s: the client did not read its answer before the deadline", rc.request_id)
            return
        if guard.fired == "drain":
            raise shutting_down() from None
        raise UpstreamTimeout("The request did not finish within its deadline.") from None
    finally:
        WATCHDOG.release(guard)


async def _answer_stream(
    gateway: Gateway,
    chat: ChatRequest,
    rc: RequestContext,
    line: dict[str, Any],
    receive: Receive,
    send: Send,
    end: float,
) -> None:
    guard = WATCHDOG.guard(end)  # hang-ups: _until_disconnect, at once
    started = False
    try:
        # Open the strategy's stream before answering: a failure to start is an ordinary HTTP error.
        stack = AsyncExitStack()
        try:
            opened = await stack.enter_async_context(gateway.stream(chat, rc))
        except BaseException:
            await stack.aclose()
            raise
        line["meta"] = opened.meta  # complete by the time the line is written, after the stream
        async with stack:  # closes every upstream response, also when the client went away
            await send({"type": "http.response.start", "status": 200, "headers": [*_SSE, *_encode(opened.headers)]})
            started = True
            await _until_disconnect(_send_events(opened.chunks, send, rc.request_id), receive)
    except asyncio.CancelledError:
        if guard.fired is None:
            raise
        guard.task.uncancel()
        if not started:
            if guard.fired == "drain":
                raise shutting_down() from None
            raise UpstreamTimeout("The request did not finish within its deadline.") from None
        if guard.fired != "drain":
            log.warning("request %s: the client did not read its stream before the deadline; abandoned", rc.request_id)
            return
        try:  # the upstream stream is closed already; tell the client why its stream ends here
            async with asyncio.timeout(_LAST_WRITE_GRACE_S / 2):
                await send({"type": "http.response.body", "body": error_event(shutting_down()), "more_body": False})
        except TimeoutError:
            log.warning("request %s: the client did not read the end of its stream", rc.request_id)
    finally:
        WATCHDOG.release(guard)


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
    raw = [_JSON, (b"content-length", b"%d" % len(body)), *_encode(headers)]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _send_events(chunks: AsyncIterator[Chunk], send: Send, request_id: str) -> None:
    """Each chunk serialized once and sent as it comes (never buffered). After the first byte, a failure is one
    error event and the end."""
    dumps = orjson.dumps
    try:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": b"data: " + dumps(chunk) + b"\n\n", "more_body": True})
        tail = _DONE
    except GatewayError as exc:
        tail = error_event(exc)
    except Exception:
        log.exception("stream failed in request %s", request_id)
        tail = error_event(internal(request_id))
    await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _until_disconnect(work: Coroutine[Any, Any, T], receive: Receive) -> T | None:
    """Run `work` until it ends or the client hangs up, whichever is first; None after a hang-up. A hang-up
    cancels the work, so upstream calls and streams are closed at once rather than run to their end for a dead
    socket."""
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
        return await work
    except asyncio.CancelledError:
        if not hung_up:
            raise  # cancelled from outside (server shutdown): not ours to swallow
        me.uncancel()
        return None
    finally:
        watcher.cancel()
