"""Redis Cluster and Sentinel for real: `redis+cluster://` to three masters started here, `redis+sentinel://` to a
master with a replica behind a Sentinel. Two gateway processes share limits exactly and share the cache through
either; on a Cluster the cache spreads over every master while each Lua script stays in one slot; after a
Sentinel failover the gateway finds the new master by itself. (The backend contracts also run on both
topologies: tests/contract.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway._redis import RedisEndpoint, RedisUnavailable
from gateway.cache.keys import make_key
from gateway.cache.redis import RedisCache
from gateway.cache.responses import ResponseCache
from gateway.ratelimit.policy import Check, LimitRule, per_minute
from gateway.ratelimit.redis import RedisLimiter
from tests._gateway_process import GatewayProcess
from tests._redis_topologies import RedisCluster3, SentinelSetup

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

CONFIG = """
providers:
  - name: mock
    kind: mock
    models:
      - {id: fast, reply: "fast says {prompt}"}
rate_limits: {timeout_s: 0.5, rpm: 1000, models: {"mock/*": {rpm: 500}}}
cache: {timeout_s: 0.5}
auth:
  keys:
    - {name: limited, key: sk-limited, rpm: 5}
    - {name: free, key: sk-free}
"""
LIMITED = {"authorization": "Bearer sk-limited"}
FREE = {"authorization": "Bearer sk-free"}


ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def chat(content: str) -> dict[str, Any]:
    """A deterministic request (temperature 0), so the cache may serve it."""
    return {"model": "mock/fast", "messages": [{"role": "user", "content": content}], "temperature": 0}


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s}s"
        time.sleep(0.05)


@pytest.fixture(params=["cluster", "sentinel"])
def topology_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("redis_cluster_url" if request.param == "cluster" else "redis_sentinel_url")
    return url


@pytest.fixture
def two_gateways(tmp_path: Path, topology_url: str) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    env = {"REDIS_URL": topology_url}  # switches both cache and limits to this topology
    with GatewayProcess(config, env) as a, GatewayProcess(config, env) as b:
        yield a, b


@pytest.mark.e2e
def test_two_gateways_share_limits_exactly_and_the_cache(two_gateways: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = two_gateways
    with httpx.Client(timeout=10) as client:
        for gateway in (a, b):
            assert client.get(f"{gateway.base_url}/health/ready").status_code == 200
        statuses = [
            client.post(f"{(a, b)[i % 2].base_url}/v1/chat/completions", json=chat(f"q{i}"), headers=LIMITED)
            for i in range(10)
        ]
        # each request checks the key's, the model's and the global limit in one script: one slot on a Cluster
        assert [r.status_code for r in statuses] == [200] * 5 + [429] * 5
        assert statuses[-1].json()["error"]["code"] == "rate_limit_exceeded"

        first = client.post(f"{a.base_url}/v1/chat/completions", json=chat("shared"), headers=FREE)
        assert first.headers["x-ultra-cache"] == "miss"

        def hit_on_b() -> bool:
            response = client.post(f"{b.base_url}/v1/chat/completions", json=chat("shared"), headers=FREE)
            return response.headers["x-ultra-cache"] == "hit"

        wait_for(hit_on_b, what="the other gateway's cache hit")


async def test_the_cache_spreads_over_every_cluster_master(
    redis_cluster: RedisCluster3, redis_cluster_url: str
) -> None:
    cache = ResponseCache(RedisCache(RedisEndpoint(redis_cluster_url, timeout_s=2.0)), ttl_s=60, max_ttl_s=60)
    try:
        keys = [
            make_key({"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}, scope="k:a") for i in range(60)
        ]
        for key in keys:  # every miss takes its lock; the stores are batched across slots and nodes
            async with cache.lookup(key, wait_s=1) as lookup:
                assert lookup.status == "miss"
                lookup.fill(ANSWER)
        await cache.drain()
        assert all(count > 0 for count in redis_cluster.keys_per_node()), "entries on every master"
        for node in redis_cluster.nodes:
            node.command("SCRIPT", "FLUSH")  # as after a restart of every node: scripts are reloaded per node
        for key in keys:
            async with cache.lookup(key, wait_s=1) as lookup:
                assert lookup.status == "hit"
    finally:
        await cache.backend.aclose()


async def test_limiter_keys_share_one_slot_on_a_cluster(redis_cluster: RedisCluster3, redis_cluster_url: str) -> None:
    limiter = RedisLimiter(RedisEndpoint(redis_cluster_url, timeout_s=2.0, decode_responses=True))
    try:
        rules = [LimitRule(scope, scope, per_minute(2), None) for scope in ("key:a", "model:m", "global")]
        checks = [Check(r, "requests", r.requests, 1) for r in rules if r.requests is not None]
        allowed = []
        for i in range(3):
            outcomes = await limiter.admit(checks, reservation=f"r{i}", reserved=0, reserve_ms=0)
            allowed.append(all(o.allowed for o in outcomes))
        assert allowed == [True, True, False]
        slots = {redis_cluster.nodes[0].command("CLUSTER", "KEYSLOT", limiter.key(c.state)) for c in checks}
        assert len(slots) == 1
    finally:
        await limiter.aclose()


async def test_after_a_sentinel_failover_the_endpoint_finds_the_new_master(
    redis_sentinel_owned: SentinelSetup,
) -> None:
    setup = redis_sentinel_owned
    endpoint = RedisEndpoint(setup.url, timeout_s=1.0, cooldown_s=0.2)
    try:
        await endpoint.call(lambda client: client.set("before", b"1"))
        old = setup.master_port()
        new = await asyncio.to_thread(setup.failover)
        assert new != old
        # Until the sentinel demotes the old master, pooled connections may still write there (Redis's own
        # failover window); once it is demoted, its READONLY reply drops them and new ones ask the sentinel.
        deadline = time.monotonic() + 30
        while setup.servers[new].command("GET", "after") != b"$1\r\n2\r\n":
            assert time.monotonic() < deadline, "the endpoint never reached the new master"
            with contextlib.suppress(RedisUnavailable):  # the breaker's probe tries again after its cool-down
                await endpoint.call(lambda client: client.set("after", b"2"))
            await asyncio.sleep(0.1)
        assert await endpoint.ping()
    finally:
        await endpoint.aclose()
