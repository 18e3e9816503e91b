"""The floor: a minimal Litestar + aiohttp passthrough (what any proxy on this stack costs at least). It forwards
the body to the upstream and returns the answer, with no validation, routing, metadata or anything else; a
stream (`"stream":true` in the body) is relayed read by read through Litestar's `Stream` response, as it arrives.

Run as `uvicorn bench.floor:app` with `BENCH_UPSTREAM=http://127.0.0.1:PORT`; a request for a `slow/...` model
goes to `BENCH_SLOW_UPSTREAM` instead, so the floor's added latency can be measured against a 50 ms upstream too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from litestar import Litestar, Request, Response, post
from litestar.response import Stream

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9101") + "/v1/chat/completions"
SLOW = os.environ.get("BENCH_SLOW_UPSTREAM", "http://127.0.0.1:9102") + "/v1/chat/completions"
_session: list[aiohttp.ClientSession] = []


async def _relay(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        while data := await upstream.content.readany():
            yield data
    finally:
        upstream.release()


@post("/v1/chat/completions", status_code=200)
async def forward(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    if not _session:
        _session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)))
    body = await request.body()
    url = SLOW if b'"slow/' in body else UPSTREAM
    if b'"stream":true' in body:
        upstream = await _session[0].post(url, data=body, headers={"content-type": "application/json"})
        return Stream(_relay(upstream), media_type="text/event-stream")
    async with _session[0].post(url, data=body, headers={"content-type": "application/json"}) as upstream:
        answer = await upstream.read()
    return Response(answer, media_type="application/json")


app = Litestar([forward], openapi_config=None)
