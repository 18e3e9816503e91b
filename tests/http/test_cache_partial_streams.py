"""A stream the upstream cuts mid-way is never cached; the same stream completed is.
The upstream is a real aiohttp server on loopback, behind an `openai`-kind provider."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from litestar.testing import AsyncTestClient

from gateway.config import parse_settings
from gateway.http.app import create_app


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


@pytest.fixture
def upstream() -> Iterator[tuple[str, dict[str, int]]]:
    """The upstream on its own thread and loop: Litestar's test client blocks the test's loop while it waits."""
    calls = {"n": 0}

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        calls["n"] += 1
        if not body.get("stream"):
            message = {"role": "assistant", "content": "Hello"}
            answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "m"}
            answer["choices"] = [{"index": 0, "message": message, "finish_reason": "stop"}]
            return web.json_response(answer)
        cut = "cut" in body["messages"][0]["content"]
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk({"role": "assistant", "content": "Hel"}))
        await response.write(chunk({"content": "lo"}))
        if cut:  # the connection ends without a finish_reason or [DONE]
            return response
        await response.write(chunk({}, "stop"))
        usage = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}
        usage["usage"] = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        await response.write(b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n")
        return response

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port: int = runner.addresses[0][1]
        return port

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield f"http://127.0.0.1:{port}/v1", calls
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def test_cut_streams_are_not_cached_and_complete_ones_are(upstream: tuple[str, dict[str, int]]) -> None:
    base_url, calls = upstream
    config = f"providers: [{{name: up, kind: openai, base_url: '{base_url}', max_retries: 0, models: [{{id: m}}]}}]"
    app = create_app(parse_settings(config, env={}))
    async with AsyncTestClient(app=app) as client:  # type: ignore[arg-type]
        for content, cached in (("please cut", False), ("complete", True)):
            payload = {"model": "up/m", "messages": [{"role": "user", "content": content}], "stream": True, "seed": 7}
            first = await client.post("/v1/chat/completions", json=payload)
            assert first.headers["x-ultra-cache"] == "miss"
            if not cached:
                assert '"error"' in first.text  # the cut is reported in-band, not as a clean end
            before = calls["n"]
            again = await client.post("/v1/chat/completions", json={**payload, "stream": False})
            assert again.status_code == 200 or not cached
            assert (again.headers["x-ultra-cache"] == "hit") is cached
            assert calls["n"] == before + (0 if cached else 1)
