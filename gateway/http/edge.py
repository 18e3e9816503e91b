"""The outermost ASGI layer: gives every HTTP request an id and puts `x-request-id` on every response, including
the framework's own 404s and errors (reference/openai-chat-completions.md §8)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["RequestIdEdge"]

_CLIENT_ID = re.compile(rb"^[A-Za-z0-9_.:-]{1,128}$")


class RequestIdEdge:
    def __init__(self, app: Any) -> None:
        self.app: ASGIApp = app

    def __getattr__(self, name: str) -> Any:  # the wrapped Litestar app's attributes (state, plugins...)
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = given.decode() if given is not None and _CLIENT_ID.match(given) else f"req_{uuid.uuid4().hex}"
        scope["ultra.request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
