"""`POST /v1/chat/completions`, streaming and not: a raw ASGI route (see `http/asgi.py`) that parses the body
once, runs it through the pipeline and sends the answer, or each chunk as it comes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import orjson

from gateway.core.aio import start
from gateway.core.errors import GatewayError
from gateway.core.types import ChatRequest, Chunk, parse_chat_request
from gateway.http.asgi import SSE_HEADERS, Inbound, raw_route, send_json, until_disconnect
from gateway.http.edge import ASGIApp, Send
from gateway.http.errors import error_event, internal, rendered
from gateway.http.render import answer_headers, encode
from gateway.pipeline import Caller
from gateway.service import Gateway

__all__ = ["chat_route"]

log = logging.getLogger("ultra_gateway")

_DONE = b"data: [DONE]\n\n"
_COALESCE_BYTES = 1 << 16  # ready events sent together, up to about this much


def chat_route(gateway: Gateway) -> ASGIApp:
    return raw_route(gateway, {"POST": _chat_completions}, rendered)


async def _chat_completions(inbound: Inbound) -> None:
    chat = parse_chat_request(await inbound.json())
    caller = inbound.caller(chat.model)
    if chat.stream:
        await inbound.stream(_answer_stream(inbound, chat, caller), error_event)
    else:
        await inbound.whole(_answer_whole(inbound, chat, caller))


async def _answer_whole(inbound: Inbound, chat: ChatRequest, caller: Caller) -> None:
    answer = await inbound.gateway.pipeline.complete(chat, caller)
    inbound.state.meta = answer.meta
    headers = answer_headers(answer.meta, answer.cache, answer.limits, answer.budget)
    await send_json(inbound.send, 200, orjson.dumps(answer.body), headers)


async def _answer_stream(inbound: Inbound, chat: ChatRequest, caller: Caller) -> None:
    # Open the strategy's stream before answering: a failure to start is an ordinary HTTP error with its status.
    stack = AsyncExitStack()
    try:
        opened = await stack.enter_async_context(inbound.gateway.pipeline.stream(chat, caller))
    except BaseException:
        await stack.aclose()
        raise
    inbound.state.meta = opened.meta  # complete by the time the line is written, after the stream
    send = inbound.send
    async with stack:  # closes every upstream response, also when the client went away
        headers = encode(answer_headers(opened.meta, opened.cache, opened.limits, opened.budget))
        await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]})
        request_id = caller.request_id
        await until_disconnect(lambda watch: _send_events(opened.chunks, send, request_id, watch), inbound.receive)


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
