"""A fault-injecting fake OpenAI-compatible upstream, served over loopback from its own thread.

The requested model picks the fault, for whole answers and streams alike:

| model | what the upstream does |
| --- | --- |
| `ok` | answers properly |
| `status-<code>` | that status with an OpenAI error body |
| `ratelimit` | 429 with `retry-after: 1` and `retry-after-ms: 20` |
| `reset` | sends headers and part of the body, then resets the connection |
| `hang-headers` | never sends anything |
| `hang-stream` | sends headers and the first part of the body, then nothing |
| `garbage` | 200 with a body (or stream events) that is not JSON |
| `truncated` | a body cut short (valid length, invalid JSON); a stream that ends without `[DONE]` |
| `trickle` | sends one keep-alive byte every 50 ms and never finishes |
| `oversized` | a valid answer of `oversize_bytes` bytes (a stream of as many bytes in many events) |
| `flood` | streams chunks as fast as the reader takes them, for ever |
| `keyleak` | a 500 HTML page that echoes the caller's key where a 200-byte cut would split it |

Every request's `Authorization` header is recorded. `closed[model]` is set when a caller of that model went away
before the answer was over (seen as a cancelled handler or a failed write), so tests can await it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import defaultdict
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.threaded import ThreadedApp

__all__ = ["FaultyUpstream", "closed_port"]


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class FaultyUpstream:
    def __init__(self, *, oversize_bytes: int = 2 * 1024 * 1024) -> None:
        self.oversize_bytes = oversize_bytes
        self.authorizations: list[str] = []
        self.closed: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.started: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        app = web.Application(client_max_size=1 << 24)
        app.router.add_post("/v1/chat/completions", self._chat)
        self.server = ThreadedApp(app)

    @property
    def url(self) -> str:
        return self.server.url + "/v1"

    def __enter__(self) -> FaultyUpstream:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.authorizations.append(request.headers.get("Authorization", ""))
        model = str(body.get("model"))
        self.started[model].set()
        try:
            return await self._answer(request, body, model)
        except (asyncio.CancelledError, ConnectionError):
            self.closed[model].set()
            raise

    async def _answer(self, request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
        stream = bool(body.get("stream"))
        if model.startswith("status-"):
            return _error(int(model[7:]), "upstream failure")
        if model == "ratelimit":
            return _error(429, "Rate limit reached", {"retry-after": "1", "retry-after-ms": "20"})
        if model == "keyleak":
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            page = "<html><body>" + "x" * 150 + f" debug: api_key={key} " + "y" * 300 + "</body></html>"
            return web.Response(status=500, text=page, content_type="text/html")
        if model == "hang-headers":
            await asyncio.Event().wait()
        if model == "garbage":
            if stream:
                return await self._sse(request, [b"data: {this is not json\n\n"])
            return web.Response(body=b"<html>not json at all", content_type="application/json")
        if model == "truncated":
            if stream:
                return await self._sse(request, [_event(model, {"role": "assistant", "content": "cut "})])
            return web.Response(body=orjson.dumps(_completion(model, "x"))[:40], content_type="application/json")
        if model in ("reset", "hang-stream", "trickle", "flood"):
            return await self._broken(request, model, stream)
        if model == "oversized":
            if stream:
                piece = _event(model, {"content": "z" * 4000})
                count = self.oversize_bytes // len(piece) + 1
                return await self._sse(
                    request, [_event(model, {"role": "assistant"}), *[piece] * count, b"data: [DONE]\n\n"]
                )
            return web.json_response(_completion(model, "z" * self.oversize_bytes))
        if stream:
            chunks = [_event(model, {"role": "assistant", "content": ""}), _event(model, {"content": "fine"})]
            return await self._sse(request, [*chunks, _event(model, {}, "stop"), b"data: [DONE]\n\n"])
        return web.json_response(_completion(model, "fine"))

    async def _sse(self, request: web.Request, events: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        return response

    async def _broken(self, request: web.Request, model: str, stream: bool) -> web.StreamResponse:
        if stream:
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            first = _event(model, {"role": "assistant", "content": "start "})
        else:
            response = web.StreamResponse(headers={"content-type": "application/json"})
            response.content_length = 10_000
            first = b'{"id": "chatcmpl-1", "object": "chat.completion", '
        await response.prepare(request)
        await response.write(first)
        if model == "reset":
            assert request.transport is not None
            request.transport.abort()
            return response
        if model == "hang-stream":
            await asyncio.Event().wait()
        if model == "trickle":
            while True:
                await asyncio.sleep(0.05)
                await response.write(b":\n" if stream else b" ")
        piece = _event(model, {"content": "flood " * 200})
        while True:  # flood: as fast as the reader drains it
            await response.write(piece)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    error = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return web.json_response(error, status=status, headers=headers)


def _event(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
