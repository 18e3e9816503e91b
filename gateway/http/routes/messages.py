"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API, so Anthropic-native
clients (the `anthropic` SDKs, tools built on them) work against the gateway unchanged and reach every provider
and `ultra-*` alias. The body is translated to a chat request (`gateway/dialects/messages.py`), run on the same
pipeline as `/v1/chat/completions`, and the answer or stream translated back.

The key may come as `x-api-key` (what Anthropic's SDKs send) or `Authorization: Bearer`. Errors use Anthropic's
shape, `{"type": "error", "error": {"type", "message"}}`, before and after a stream has started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.auth import Principal
from gateway.core.errors import GatewayError
from gateway.core.types import Chunk, parse_chat_request
from gateway.dialects.messages import (
    MessageStream,
    chat_body,
    error_body,
    estimate_input_tokens,
    message_from_chat,
    sse,
)
from gateway.http.asgi import Inbound, raw_route, send_json
from gateway.http.edge import ASGIApp
from gateway.http.errors import rendered_as
from gateway.http.routes._bridge import complete, send_stream, streamed
from gateway.service import Gateway

__all__ = ["count_tokens_route", "messages_route"]


def _authenticate(gateway: Gateway, headers: dict[str, str]) -> Principal:
    authorization = headers.get("authorization")
    if authorization is None and headers.get("x-api-key"):
        authorization = f"Bearer {headers['x-api-key']}"
    return gateway.auth.authenticate(authorization)


def _render(error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    return rendered_as(error, error_body)


def _error_event(error: GatewayError) -> bytes:
    return sse(("error", error_body(error)))


async def _events(chunks: AsyncIterator[Chunk], stream: MessageStream) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        for event in stream.feed(chunk):
            yield sse(event)
    for event in stream.finish():
        yield sse(event)


async def _messages(inbound: Inbound) -> None:
    body = chat_body(await inbound.json())
    chat = parse_chat_request(body)
    caller = inbound.caller(chat.model)

    async def whole() -> None:
        answer = await complete(inbound, chat, caller)
        await send_json(inbound.send, 200, message_from_chat(answer.body, model=chat.model), answer.headers)

    async def stream() -> None:
        translator = MessageStream(model=chat.model, input_tokens=estimate_input_tokens(body))
        async with streamed(inbound, chat, caller) as opened:
            await send_stream(inbound, opened.headers, _events(opened.chunks, translator), _error_event)

    await (inbound.stream(stream(), _error_event) if chat.stream else inbound.whole(whole()))


async def _count_tokens(inbound: Inbound) -> None:
    body = chat_body(await inbound.json(), for_counting=True)
    model = str(body["model"])
    inbound.gateway.router.authorized(inbound.principal, model)  # 403 or 404 as for a real request
    await send_json(inbound.send, 200, {"input_tokens": estimate_input_tokens(body)})


def messages_route(gateway: Gateway) -> ASGIApp:
    return raw_route(gateway, {"POST": _messages}, _render, authenticate=_authenticate)


def count_tokens_route(gateway: Gateway) -> ASGIApp:
    return raw_route(gateway, {"POST": _count_tokens}, _render, authenticate=_authenticate)
