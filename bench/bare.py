"""The bare floor: a raw ASGI app under uvicorn (no framework at all) that forwards the body to the upstream
through one pooled aiohttp session and sends the answer back; a stream (`"stream":true` in the body) is relayed
read by read, as it arrives. No validation, routing, metadata or anything else: what uvicorn + aiohttp cost.

Run as `uvicorn bench.bare:app` with `BENCH_UPSTREAM=http://127.0.0.1:PORT`; a `slow/...` model goes to
`BENCH_SLOW_UPSTREAM` instead.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9101") + "/v1/chat/completions"
SLOW = os.environ.get("BENCH_SLOW_UPSTREAM", "http://127.0.0.1:9102") + "/v1/chat/completions"
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_HEADERS = {"content-type": "application/json"}
_session: list[aiohttp.ClientSession] = []

Message = MutableMapping[str, Any]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":  # nothing to set up or tear down
        while True:
            kind = (await receive())["type"]
            await send({"type": kind + ".complete"})
            if kind == "lifespan.shutdown":
                return
    if not _session:
        _session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)))
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(parts)
    url = SLOW if b'"slow/' in body else UPSTREAM
    async with _session[0].post(url, data=body, headers=_HEADERS) as upstream:
        if b'"stream":true' not in body:
            answer = await upstream.read()
            headers = [*_JSON, (b"content-length", b"%d" % len(answer))]
            await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
            await send({"type": "http.response.body", "body": answer})
            return
        await send({"type": "http.response.start", "status": upstream.status, "headers": _SSE})
        while data := await upstream.content.readany():
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
