"""`POST /v1/responses`, `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}`: OpenAI's Responses API, so
`client.responses.create / stream / parse` work unchanged and reach every provider and `ultra-*` alias. The
request is translated to a chat request (`gateway/dialects/responses.py`), run on the same pipeline as
`/v1/chat/completions`, and the answer or stream translated back, with the gateway's `ultra` metadata.

Responses are kept per API key for `previous_response_id` and `GET` (`gateway/cache/stored_responses.py`: in
memory, or on Redis when the cache is), unless the request says `store: false`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, delete, get
from litestar.datastructures import State
from litestar.params import FromPath

from gateway.cache.stored_responses import ResponseStore, StoredResponse
from gateway.core.errors import GatewayError, NotFound, ServiceUnavailable
from gateway.core.types import Chunk, parse_chat_request
from gateway.dialects.responses import (
    ResponseEvents,
    ResponsesCall,
    new_response_id,
    output_messages,
    response_from_chat,
    sse,
    translate,
)
from gateway.http.asgi import Inbound, raw_route, send_json
from gateway.http.auth import principal_of, require_key
from gateway.http.edge import ASGIApp
from gateway.http.errors import rendered
from gateway.http.routes._bridge import complete, send_stream, streamed
from gateway.service import Gateway

__all__ = ["delete_response", "get_response", "responses_route"]

log = logging.getLogger("ultra_gateway")


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"No response with id '{response_id}' is stored for this key.", param="response_id")


async def _keep(store: ResponseStore, owner: str, call: ResponsesCall, response: dict[str, Any]) -> None:
    """Store the response unless asked not to. A store that is down costs the client nothing but the chaining:
    the answer is sent all the same (and a later GET or chain finds nothing)."""
    if not call.store:
        return
    conversation = [*call.conversation, *output_messages(response)]
    try:
        await store.put(owner, response["id"], StoredResponse(response, conversation))
    except ServiceUnavailable as exc:
        log.warning("response %s not stored: %s", response["id"], exc.message)


def responses_route(gateway: Gateway) -> ASGIApp:
    async def create(inbound: Inbound) -> None:
        store = inbound.gateway.responses
        body = await inbound.json()
        owner = inbound.principal.name
        history: list[dict[str, Any]] = []
        previous = body.get("previous_response_id") if isinstance(body, dict) else None
        if isinstance(previous, str) and previous:
            stored = await store.get(owner, previous)
            if stored is None:
                error = _not_found(previous)
                error.param, error.code = "previous_response_id", "previous_response_not_found"
                raise error
            history = stored.conversation
        call = translate(body, history=history)
        chat = parse_chat_request(call.chat)
        caller = inbound.caller(chat.model)
        response_id = new_response_id()

        async def whole() -> None:
            answer = await complete(inbound, chat, caller)
            response = response_from_chat(answer.body, call, response_id=response_id, model=chat.model)
            await _keep(store, owner, call, response)
            await send_json(inbound.send, 200, response, answer.headers)

        if not chat.stream:
            await inbound.whole(whole())
            return
        events = ResponseEvents(call, response_id=response_id, model=chat.model)

        async def framed(chunks: AsyncIterator[Chunk]) -> AsyncIterator[bytes]:
            for event in events.start():
                yield sse(event)
            async for chunk in chunks:
                for event in events.feed(chunk):
                    yield sse(event)
            for event in events.finish():
                yield sse(event)
            assert events.response is not None
            await _keep(store, owner, call, events.response)

        def failed(error: GatewayError) -> bytes:  # after the start: `error`, then `response.failed`
            return b"".join(sse(event) for event in events.fail(error))

        async def stream() -> None:
            async with streamed(inbound, chat, caller) as opened:
                await send_stream(inbound, opened.headers, framed(opened.chunks), failed)

        await inbound.stream(stream(), failed)

    return raw_route(gateway, {"POST": create}, rendered)


@get("/v1/responses/{response_id:str}", guards=[require_key])
async def get_response(response_id: FromPath[str], state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    store: ResponseStore = state.gateway.responses
    stored = await store.get(principal_of(request).name, response_id)
    if stored is None:
        raise _not_found(response_id)
    return stored.response


@delete("/v1/responses/{response_id:str}", guards=[require_key], status_code=200)
async def delete_response(response_id: FromPath[str], state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    store: ResponseStore = state.gateway.responses
    if not await store.delete(principal_of(request).name, response_id):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}
