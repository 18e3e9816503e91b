"""`POST /v1/chat/completions`, streaming and not (SPEC §2, reference §5)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import orjson
from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.response import Stream

from gateway.core.errors import GatewayError, InvalidRequest
from gateway.core.types import ChatRequest, Chunk, parse_chat_request
from gateway.http.auth import principal_of, require_key
from gateway.http.errors import error_event, internal, request_id_of, trace_id_of
from gateway.service import Gateway, RequestContext

__all__ = ["chat_completions"]

log = logging.getLogger("ultra_gateway")

_DONE = b"data: [DONE]\n\n"


async def _read_request(request: Request[Any, Any, Any]) -> ChatRequest:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request.") from None
    return parse_chat_request(body)


def _context(request: Request[Any, Any, Any]) -> RequestContext:
    headers = request.headers
    hints = {k: v for k, v in headers.items() if k.startswith("x-ultra-")}
    principal = principal_of(request)
    return RequestContext(
        request_id=request_id_of(request),
        trace_id=trace_id_of(request),
        key_name=None if principal.anonymous else principal.name,
        hints=hints,
        principal=principal,
        cache_control=headers.get("cache-control"),
        cache_ttl=headers.get("x-ultra-cache-ttl"),
    )


@post("/v1/chat/completions", status_code=200, guards=[require_key])
async def chat_completions(request: Request[Any, Any, Any], state: State) -> Response[bytes] | Stream:
    gateway: Gateway = state.gateway
    chat = await _read_request(request)
    rc = _context(request)
    log: dict[str, Any] = {"model": chat.model, "key": rc.key_name}
    request.scope["ultra.log"] = log  # type: ignore[typeddict-unknown-key]  # read by the access log in the edge
    if not chat.stream:
        outcome = await gateway.complete(chat, rc)
        log["meta"] = outcome.meta
        return Response(orjson.dumps(outcome.body), media_type="application/json", headers=outcome.headers)
    # Open the strategy's stream before answering: a failure to start is an ordinary HTTP error with its status.
    stack = AsyncExitStack()
    try:
        outcome_stream = await stack.enter_async_context(gateway.stream(chat, rc))
    except BaseException:
        await stack.aclose()
        raise
    log["meta"] = outcome_stream.meta  # complete by the time the line is written, after the stream
    return Stream(
        _sse(outcome_stream.chunks, stack, rc.request_id),
        media_type="text/event-stream",
        headers={**outcome_stream.headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _sse(chunks: AsyncIterator[Chunk], stack: AsyncExitStack, request_id: str) -> AsyncIterator[bytes]:
    """Each chunk serialized once, here. After the first byte, a failure is one error event and the end."""
    dumps = orjson.dumps
    try:
        async for chunk in chunks:
            yield b"data: " + dumps(chunk) + b"\n\n"
        yield _DONE
    except GatewayError as exc:
        yield error_event(exc)
    except Exception:
        log.exception("stream failed in request %s", request_id)
        yield error_event(internal(request_id))
    finally:
        await stack.aclose()  # closes every upstream response, also when the client went away
