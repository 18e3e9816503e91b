"""The floor: a minimal Litestar + aiohttp passthrough (what any proxy on this stack costs at least). It forwards the
body to the upstream and returns the answer, with no validation, routing, metadata or anything else.

Run as `uvicorn bench.floor:app` with `BENCH_UPSTREAM=http://127.0.0.1:PORT`; a request for a `slow/...` model
goes to `BENCH_SLOW_UPSTREAM` instead, so the floor's added latency can be measured against a 50 ms upstream too.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from litestar import Litestar, Request, Response, post

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9101") + "/v1/chat/completions"
SLOW = os.environ.get("BENCH_SLOW_UPSTREAM", "http://127.0.0.1:9102") + "/v1/chat/completions"
_session: list[aiohttp.ClientSession] = []


@post("/v1/chat/completions", status_code=200)
async def forward(request: Request[Any, Any, Any]) -> Response[bytes]:
    if not _session:
        _session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)))
    body = await request.body()
    url = SLOW if b'"slow/' in body else UPSTREAM
    async with _session[0].post(url, data=body, headers={"content-type": "application/json"}) as upstream:
        answer = await upstream.read()
    return Response(answer, media_type="application/json")


app = Litestar([forward], openapi_config=None)
