"""Auth, rate limits and the cache through the HTTP edge, in-process, on the memory backends.

The app runs on the test's own event loop through httpx's ASGITransport (Litestar's AsyncTestClient handles one
request at a time on another thread, which would make the concurrency tests below sequential)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.builder import build_gateway
from gateway.config import parse_settings
from gateway.http.app import create_app
from gateway.service import Gateway

CONFIG = """
providers:
  - name: fast
    kind: mock
    models:
      - {id: echo, input_cost_per_mtok: 1.0, output_cost_per_mtok: 2.0, reply: "echo: {prompt}"}
      - {id: other, reply: "other: {prompt}"}
rate_limits:
  models:
    "fast/other": {rpm: 2}
auth:
  keys:
    - {name: team-a, key: sk-a, rpm: 3, tpm: 100000}
    - {name: team-b, key: sk-b, tenant: acme}
    - {name: team-c, key: sk-c, tenant: acme}
    - {name: narrow, key: sk-n, models: ["fast/e*"]}
    - {name: tokens, key: sk-t, tpm: 1000}
"""
A, B, C, N, T = ({"authorization": f"Bearer {k}"} for k in ("sk-a", "sk-b", "sk-c", "sk-n", "sk-t"))


def chat(content: str = "hello", **extra: Any) -> dict[str, Any]:
    """A deterministic request (temperature 0), so the cache may serve it."""
    return {"model": "fast/echo", "messages": [{"role": "user", "content": content}], "temperature": 0, **extra}


class Client(httpx.AsyncClient):
    gateway: Gateway


async def client_for(config: str) -> AsyncIterator[Client]:
    settings = parse_settings(config, env={})
    gateway = build_gateway(settings)
    app = create_app(settings, gateway=gateway)
    await gateway.start()  # what the lifespan does (ASGITransport does not run it)
    try:
        async with Client(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            client.gateway = gateway
            yield client
    finally:
        await gateway.aclose()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async for c in client_for(CONFIG):
        yield c


async def settled(client: Client) -> None:
    """Wait (bounded) for background work (token settlement, cache stores) to land."""
    pipeline = client.gateway.pipeline
    async with asyncio.timeout(5):
        while (pipeline.cache is not None and pipeline.cache.busy) or (
            pipeline.limiter is not None and pipeline.limiter.busy
        ):
            await asyncio.sleep(0.01)


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return error


def sse(text: str) -> list[dict[str, Any]]:
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    return [orjson.loads(e.removeprefix("data: ")) for e in events[:-1]]


# --- auth ----------------------------------------------------------------------------------------------------


async def test_missing_and_wrong_keys_are_401(client: Client) -> None:
    error_of(await client.post("/v1/chat/completions", json=chat()), 401, "invalid_api_key")
    wrong = await client.post("/v1/chat/completions", json=chat(), headers={"authorization": "Bearer sk-zzz"})
    assert "sk-zzz" not in error_of(wrong, 401, "invalid_api_key")["message"]
    error_of(await client.get("/v1/models"), 401, "invalid_api_key")
    assert (await client.get("/health/live")).status_code == 200  # health stays open
    assert (await client.get("/health/ready")).status_code == 200


async def test_model_outside_the_keys_globs_is_403_and_hidden_from_listing(client: Client) -> None:
    error = error_of(
        await client.post("/v1/chat/completions", json=chat(model="fast/other"), headers=N), 403, "model_not_allowed"
    )
    assert error["param"] == "model"
    assert (await client.post("/v1/chat/completions", json=chat(), headers=N)).status_code == 200
    listed = [m["id"] for m in (await client.get("/v1/models", headers=N)).json()["data"]]
    assert listed == ["fast/echo"]
    error_of(await client.get("/v1/models/fast/other", headers=N), 404, "model_not_found")


# --- rate limits -----------------------------------------------------------------------------------------------


async def test_429_after_the_keys_rpm_with_openai_headers(client: Client) -> None:
    remaining = []
    for i in range(3):
        ok = await client.post("/v1/chat/completions", json=chat(f"q{i}"), headers=A)
        assert ok.status_code == 200
        assert ok.headers["x-ratelimit-limit-requests"] == "3"
        assert ok.headers["x-ratelimit-limit-tokens"] == "100000"
        assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(ok.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    refused = await client.post("/v1/chat/completions", json=chat("q4"), headers=A)
    error = error_of(refused, 429, "rate_limit_exceeded")
    assert error["type"] == "rate_limit_exceeded"
    assert "key 'team-a'" in error["message"]
    assert "sk-a" not in refused.text
    assert 19 <= int(refused.headers["retry-after"]) <= 20
    assert 19_000 <= int(refused.headers["retry-after-ms"]) <= 20_000
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-request-id"]
    # another key is untouched
    assert (await client.post("/v1/chat/completions", json=chat("q5"), headers=B)).status_code == 200


async def test_per_model_limit_is_shared_by_the_keys_using_it(client: Client) -> None:
    for headers in (B, C):
        response = await client.post("/v1/chat/completions", json=chat(model="fast/other"), headers=headers)
        assert response.status_code == 200
    refused = await client.post("/v1/chat/completions", json=chat(model="fast/other", seed=1), headers=B)
    assert "model 'fast/other'" in error_of(refused, 429, "rate_limit_exceeded")["message"]


async def test_tokens_are_settled_with_real_usage(client: Client) -> None:
    # tpm 1000: one token refills every 60 ms, so the arithmetic below is exact to a token or two
    first = await client.post("/v1/chat/completions", json=chat("one", max_tokens=50), headers=T)
    estimate = 1000 - int(first.headers["x-ratelimit-remaining-tokens"])
    used = first.json()["usage"]["total_tokens"]
    assert estimate > used + 20  # the reservation was the (pessimistic) estimate
    await settled(client)
    second = await client.post("/v1/chat/completions", json=chat("two", max_tokens=50), headers=T)
    after = int(second.headers["x-ratelimit-remaining-tokens"])
    assert 0 <= after - (1000 - used - estimate) <= 2  # the first request ended up charged at its real usage


async def test_cache_hits_cost_no_tokens_streamed_or_not(client: Client) -> None:
    body = chat("free", max_tokens=50)
    await client.post("/v1/chat/completions", json=body, headers=T)  # miss: charged its usage
    await settled(client)
    remaining = []
    for stream in (True, False, True):
        hit = await client.post("/v1/chat/completions", json={**body, "stream": stream}, headers=T)
        assert hit.headers["x-ultra-cache"] == "hit"
        remaining.append(int(hit.headers["x-ratelimit-remaining-tokens"]))  # after reserving the estimate
        await settled(client)
    # each hit reserved the same estimate and got it all back, so each saw the same budget (plus refill)
    assert remaining[0] <= remaining[1] <= remaining[2] <= remaining[0] + 2


# --- cache -----------------------------------------------------------------------------------------------------


async def test_miss_then_hit_with_fresh_id_no_calls_and_zero_cost(client: Client) -> None:
    first = await client.post("/v1/chat/completions", json=chat(temperature=0), headers=B)
    assert first.headers["x-ultra-cache"] == "miss"
    assert first.json()["ultra"]["cache"] == "miss"
    await settled(client)
    second = await client.post("/v1/chat/completions", json=chat(temperature=0.0, user="u"), headers=B)
    assert second.headers["x-ultra-cache"] == "hit"
    a, b = first.json(), second.json()
    assert b["choices"] == a["choices"]
    assert b["usage"] == a["usage"]  # what the answer originally reported
    assert b["id"] != a["id"]
    assert b["model"] == "fast/echo"
    assert b["ultra"]["cache"] == "hit"
    assert b["ultra"]["calls"] == []
    assert float(second.headers["x-ultra-cost-usd"]) == 0
    assert float(first.headers["x-ultra-cost-usd"]) > 0


async def test_cache_control_and_ttl_header(client: Client) -> None:
    body = chat("ttl")
    assert (await client.post("/v1/chat/completions", json=body, headers={**B, "x-ultra-cache-ttl": "0"})).headers[
        "x-ultra-cache"
    ] == "miss"
    await settled(client)
    assert (await client.post("/v1/chat/completions", json=body, headers=B)).headers["x-ultra-cache"] == "miss"
    await settled(client)
    assert (await client.post("/v1/chat/completions", json=body, headers=B)).headers["x-ultra-cache"] == "hit"
    no_cache = await client.post("/v1/chat/completions", json=body, headers={**B, "cache-control": "no-cache"})
    assert no_cache.headers["x-ultra-cache"] == "bypass"
    no_store = await client.post("/v1/chat/completions", json=chat("ns"), headers={**B, "Cache-Control": "no-store"})
    assert no_store.headers["x-ultra-cache"] == "bypass"
    await settled(client)
    assert (await client.post("/v1/chat/completions", json=chat("ns"), headers=B)).headers["x-ultra-cache"] == "miss"
    bad = await client.post("/v1/chat/completions", json=body, headers={**B, "x-ultra-cache-ttl": "soon"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-ultra-cache-ttl"


async def test_scope_key_isolates_and_scope_tenant_shares() -> None:
    # default scope: key. team-b and team-c share a tenant but not entries
    async for client in client_for(CONFIG):
        await client.post("/v1/chat/completions", json=chat("iso"), headers=B)
        await settled(client)
        assert (await client.post("/v1/chat/completions", json=chat("iso"), headers=C)).headers[
            "x-ultra-cache"
        ] == "miss"
        assert (await client.post("/v1/chat/completions", json=chat("iso"), headers=A)).headers[
            "x-ultra-cache"
        ] == "miss"
    async for client in client_for(CONFIG + "cache: {scope: tenant}\n"):
        await client.post("/v1/chat/completions", json=chat("iso"), headers=B)
        await settled(client)
        shared = await client.post("/v1/chat/completions", json=chat("iso"), headers=C)
        assert shared.headers["x-ultra-cache"] == "hit"
        assert (await client.post("/v1/chat/completions", json=chat("iso"), headers=A)).headers[
            "x-ultra-cache"
        ] == "miss"


async def test_truncated_answers_are_not_cached(client: Client) -> None:
    body = chat("one two three four five", max_tokens=2)
    first = await client.post("/v1/chat/completions", json=body, headers=B)
    assert first.json()["choices"][0]["finish_reason"] == "length"
    await settled(client)
    assert (await client.post("/v1/chat/completions", json=body, headers=B)).headers["x-ultra-cache"] == "miss"


async def test_streamed_answer_is_cached_and_replayed_as_a_stream(client: Client) -> None:
    streamed = await client.post("/v1/chat/completions", json=chat("stream me", stream=True), headers=B)
    assert streamed.headers["x-ultra-cache"] == "miss"
    original = sse(streamed.text)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in original if c["choices"])
    await settled(client)
    # the completed stream now answers a non-streaming request
    plain = await client.post("/v1/chat/completions", json=chat("stream me"), headers=B)
    assert plain.headers["x-ultra-cache"] == "hit"
    assert plain.json()["choices"][0]["message"]["content"] == text == "echo: stream me"
    assert plain.json()["choices"][0]["finish_reason"] == "stop"
    # and a streaming one, as chunks, with the usage chunk only when asked
    payload = chat("stream me", stream=True, stream_options={"include_usage": True})
    replay = await client.post("/v1/chat/completions", json=payload, headers=B)
    assert replay.headers["x-ultra-cache"] == "hit"
    assert replay.headers["content-type"].startswith("text/event-stream")
    chunks = sse(replay.text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sum(1 for c in chunks if c["choices"] and "role" in c["choices"][0]["delta"]) == 1
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == text
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-1]["ultra"]["cache"] == "hit"
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "fast/echo" for c in chunks)
    without_usage = sse(
        (await client.post("/v1/chat/completions", json=chat("stream me", stream=True), headers=B)).text
    )
    assert all(c["choices"] for c in without_usage)


async def test_tool_call_answers_replay_with_sdk_shaped_deltas(client: Client) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    body = chat("call it", tools=tools)
    first = await client.post("/v1/chat/completions", json=body, headers=B)
    assert first.json()["choices"][0]["finish_reason"] == "tool_calls"
    await settled(client)
    replay = await client.post("/v1/chat/completions", json={**body, "stream": True}, headers=B)
    assert replay.headers["x-ultra-cache"] == "hit"
    chunks = sse(replay.text)
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["id"] == first.json()["choices"][0]["message"]["tool_calls"][0]["id"]
    assert calls[0]["function"]["name"] == "lookup"
    assert "".join(tc["function"].get("arguments", "") for tc in calls) == "{}"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_concurrent_identical_requests_make_one_upstream_call() -> None:
    config = CONFIG.replace('reply: "echo: {prompt}"', 'reply: "echo: {prompt}", latency_ms: 200')
    async for client in client_for(config):
        body = chat("same")
        results = await asyncio.gather(*(client.post("/v1/chat/completions", json=body, headers=B) for _ in range(8)))
        statuses = [r.headers["x-ultra-cache"] for r in results]
        assert sorted(statuses) == ["hit"] * 7 + ["miss"]
        assert len({r.json()["choices"][0]["message"]["content"] for r in results}) == 1
        # the metadata says who paid: one response carries the upstream call, the others none
        assert sorted(len(r.json()["ultra"]["calls"]) for r in results) == [0] * 7 + [1]


async def test_sampled_requests_are_neither_served_from_nor_stored_in_the_cache(client: Client) -> None:
    sampled = {k: v for k, v in chat("sample me").items() if k != "temperature"}  # the API's default is 1
    for body in (sampled, {**sampled, "temperature": 1.2}, {**sampled, "temperature": 0.3, "stream": True}):
        for _ in range(2):
            response = await client.post("/v1/chat/completions", json=body, headers=B)
            assert response.headers["x-ultra-cache"] == "bypass"
        if not body.get("stream"):
            assert response.json()["ultra"]["cache_bypass"] == "sampled"
    # a seed makes a sampled request reproducible: cached as before
    seeded = {**sampled, "temperature": 1.2, "seed": 42}
    assert (await client.post("/v1/chat/completions", json=seeded, headers=B)).headers["x-ultra-cache"] == "miss"
    await settled(client)
    hit = await client.post("/v1/chat/completions", json=seeded, headers=B)
    assert hit.headers["x-ultra-cache"] == "hit"
    assert "cache_bypass" not in hit.json()["ultra"]


async def test_cache_sampled_true_caches_sampled_requests_too() -> None:
    async for client in client_for(CONFIG + "cache: {sampled: true}\n"):
        body = {k: v for k, v in chat("sample me").items() if k != "temperature"}
        assert (await client.post("/v1/chat/completions", json=body, headers=B)).headers["x-ultra-cache"] == "miss"
        await settled(client)
        assert (await client.post("/v1/chat/completions", json=body, headers=B)).headers["x-ultra-cache"] == "hit"
