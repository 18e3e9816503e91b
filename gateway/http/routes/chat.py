"""`POST /v1/chat/completions`, streaming and not: a raw ASGI route (see `http/asgi.py`) that parses the body
once, runs it through the pipeline and sends the answer, or each chunk as it comes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import orjson

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
        await until_disconnect(_send_events(opened.chunks, send, caller.request_id), inbound.receive)


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
