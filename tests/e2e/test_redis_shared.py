"""End to end on a real redis-server: two gateway processes share limits and cache exactly, Redis dies and comes
back mid-run, and the openai SDK reads a cached answer replayed as a stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests._gateway_process import GatewayProcess
from tests._redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(120)]

CONFIG = """
providers:
  - name: mock
    kind: mock
    models:
      - {id: fast, reply: "fast says {prompt}"}
      - {id: slow, latency_ms: 400, reply: "slow says {prompt}"}
cache: {timeout_s: 0.25}
rate_limits: {timeout_s: 0.25}
auth:
  keys:
    - {name: limited, key: sk-limited, rpm: 5}
    - {name: burst, key: sk-burst, rpm: 5}
    - {name: free, key: sk-free}
"""
LIMITED = {"authorization": "Bearer sk-limited"}
FREE = {"authorization": "Bearer sk-free"}
BURST = {"authorization": "Bearer sk-burst"}


def chat(content: str, model: str = "mock/fast", **extra: Any) -> dict[str, Any]:
    """A deterministic request (temperature 0), so the cache may serve it."""
    return {"model": model, "messages": [{"role": "user", "content": content}], "temperature": 0, **extra}


def wait_for(condition: Any, timeout_s: float = 15.0, what: str = "condition") -> None:
    """Poll a condition under a bounded deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s}s"
        time.sleep(0.05)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def two_gateways(config_file: Path, redis_url: str) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    # REDIS_URL alone switches both cache and limits to Redis (the file names no backend)
    env = {"REDIS_URL": redis_url}
    with GatewayProcess(config_file, env) as a, GatewayProcess(config_file, env) as b:
        yield a, b


def cache_keys(server: RedisServer) -> int:
    reply = server.command("KEYS", "ugw:v1:cache:*")
    return int(reply.split(b"\r\n", 1)[0][1:])  # RESP array header: *N


async def test_two_processes_together_admit_exactly_the_limit(
    two_gateways: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = two_gateways
    async with httpx.AsyncClient(timeout=10) as client:
        # in turn, alternating processes: the first five are admitted (three on a, two on b), the rest refused
        statuses = []
        for i in range(12):
            gateway = (a, b)[i % 2]
            response = await client.post(f"{gateway.base_url}/v1/chat/completions", json=chat(f"q{i}"), headers=LIMITED)
            statuses.append(response.status_code)
        assert statuses == [200] * 5 + [429] * 7
        refused = response
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ratelimit-limit-requests"] == "5"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        # all at once, spread over both processes: still exactly five
        burst = await asyncio.gather(
            *(
                client.post(f"{(a, b)[i % 2].base_url}/v1/chat/completions", json=chat(f"b{i}"), headers=BURST)
                for i in range(12)
            )
        )
        assert sorted(r.status_code for r in burst) == [200] * 5 + [429] * 7
        # another key is not affected
        assert (await client.post(f"{b.base_url}/v1/chat/completions", json=chat("x"), headers=FREE)).status_code == 200


async def test_two_processes_share_the_cache_and_one_upstream_call(
    two_gateways: tuple[GatewayProcess, GatewayProcess], redis_session: RedisServer
) -> None:
    a, b = two_gateways
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.post(f"{a.base_url}/v1/chat/completions", json=chat("shared"), headers=FREE)
        assert first.headers["x-ultra-cache"] == "miss"
        wait_for(lambda: cache_keys(redis_session) == 1, what="the entry in Redis")
        second = await client.post(f"{b.base_url}/v1/chat/completions", json=chat("shared"), headers=FREE)
        assert second.headers["x-ultra-cache"] == "hit"
        assert second.json()["choices"] == first.json()["choices"]
        # concurrent identical misses on both processes: one upstream call between them (the Redis lock)
        burst = [
            client.post(
                f"{(a, b)[i % 2].base_url}/v1/chat/completions", json=chat("stampede", "mock/slow"), headers=FREE
            )
            for i in range(6)
        ]
        responses = await asyncio.gather(*burst)
    assert all(r.status_code == 200 for r in responses)
    assert sum(len(r.json()["ultra"]["calls"]) for r in responses) == 1
    assert sorted(r.headers["x-ultra-cache"] for r in responses) == ["hit"] * 5 + ["miss"]


def test_redis_killed_and_restarted_mid_run(config_file: Path, redis_server_owned: RedisServer) -> None:
    env = {"REDIS_URL": redis_server_owned.url}
    with GatewayProcess(config_file, env) as gateway, httpx.Client(base_url=gateway.base_url, timeout=10) as client:

        def post(content: str, headers: dict[str, str] = FREE) -> httpx.Response:
            return client.post("/v1/chat/completions", json=chat(content), headers=headers)

        assert client.get("/health/ready").status_code == 200
        assert post("before").headers["x-ultra-cache"] == "miss"
        wait_for(lambda: post("before").headers["x-ultra-cache"] == "hit", what="a cache hit")

        redis_server_owned.kill()
        for i in range(10):  # requests keep succeeding, without waiting on the dead server
            started = time.monotonic()
            response = post(f"during {i}")
            assert response.status_code == 200, response.text
            assert response.headers["x-ultra-cache"] == "bypass"
            assert time.monotonic() - started < 2.0
        limited = [post(f"limited {i}", LIMITED).status_code for i in range(7)]
        assert limited == [200] * 5 + [429] * 2  # fail-open still limits, per process
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis_cache"] == "unreachable"

        redis_server_owned.start()  # same port, empty (persistence off)
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="readiness")
        assert post("after").status_code == 200
        wait_for(lambda: post("after").headers["x-ultra-cache"] == "hit", what="caching to resume")
        # stores are batched for a few ms (the hit above may come from the leader in this process meanwhile)
        wait_for(lambda: cache_keys(redis_server_owned) >= 1, what="the answer stored in the restarted Redis")


def test_openai_sdk_reads_a_cached_answer_as_a_stream(config_file: Path, redis_url: str) -> None:
    with GatewayProcess(config_file, {"REDIS_URL": redis_url}) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="sk-free", max_retries=0)
        messages: Any = [{"role": "user", "content": "replay me"}]
        raw = client.chat.completions.with_raw_response.create(model="mock/fast", messages=messages, temperature=0)
        original = raw.parse()
        assert raw.headers["x-ultra-cache"] == "miss"
        wait_for(
            lambda: (
                client.chat.completions.with_raw_response.create(
                    model="mock/fast", messages=messages, temperature=0
                ).headers["x-ultra-cache"]
                == "hit"
            ),
            what="a cache hit",
        )
        stream = client.chat.completions.create(
            model="mock/fast", messages=messages, temperature=0, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == original.choices[0].message.content
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert original.usage is not None
        assert chunks[-1].usage.total_tokens == original.usage.total_tokens
        # the SDK's own helper accumulates the replay into the same message
        with client.chat.completions.stream(model="mock/fast", messages=messages, temperature=0) as helper:
            final = helper.get_final_completion()
        assert final.choices[0].message.content == original.choices[0].message.content

        limited = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="sk-limited", max_retries=0)
        for i in range(5):
            limited.chat.completions.create(model="mock/fast", messages=[{"role": "user", "content": f"n{i}"}])
        with pytest.raises(openai.RateLimitError) as caught:
            limited.chat.completions.create(model="mock/fast", messages=[{"role": "user", "content": "n5"}])
        assert caught.value.code == "rate_limit_exceeded"
        assert caught.value.response.headers["retry-after-ms"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="sk-nope", max_retries=0).models.list()
