"""One contract for both cache backends, through the ResponseCache the service uses: memory and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway._redis import RedisEndpoint
from gateway.cache.base import CacheBackend, Write
from gateway.cache.keys import make_key
from gateway.cache.memory import MemoryCache
from gateway.cache.redis import RedisCache
from gateway.cache.responses import ResponseCache

pytestmark = pytest.mark.timeout(30)

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def answer(text: str = "hello", finish: str | None = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


# Redis three ways: one server, a Cluster of three masters (`redis+cluster://`), a master behind Sentinel.
REDIS_URL_FIXTURE = {"redis": "redis_url", "redis-cluster": "redis_cluster_url", "redis-sentinel": "redis_sentinel_url"}


@pytest.fixture(params=["memory", *(pytest.param(name, marks=pytest.mark.redis) for name in REDIS_URL_FIXTURE)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[CacheBackend]:
    if request.param == "memory":
        store: CacheBackend = MemoryCache(max_entries=100, max_bytes=1 << 20)
    else:
        store = RedisCache(RedisEndpoint(request.getfixturevalue(REDIS_URL_FIXTURE[request.param]), timeout_s=1.0))
    yield store
    await store.aclose()


@pytest.fixture
async def cache(backend: CacheBackend) -> AsyncIterator[ResponseCache]:
    # compress_over small, so the compressed path is exercised on both backends
    cache = ResponseCache(backend, ttl_s=60, max_ttl_s=120, compress_over=64, lock_wait_s=2)
    yield cache
    await cache.drain()  # background writes (a lock released after a miss) land before the backend closes


async def fill(cache: ResponseCache, body: dict[str, Any], scope: str = "k:a", **kw: Any) -> str:
    async with cache.lookup(make_key(BODY, scope=scope), wait_s=5, **kw) as lookup:
        status = lookup.status
        if lookup.response is None:
            lookup.fill(body)
    await cache.drain()
    return status


async def status_of(cache: ResponseCache, scope: str = "k:a", **kw: Any) -> tuple[str, dict[str, Any] | None]:
    async with cache.lookup(make_key(BODY, scope=scope), wait_s=5, **kw) as lookup:
        return lookup.status, lookup.response


async def test_miss_then_hit_returns_an_independent_copy(cache: ResponseCache) -> None:
    assert await fill(cache, answer("x" * 200)) == "miss"
    status, first = await status_of(cache)
    assert status == "hit"
    assert first == answer("x" * 200)
    assert first is not None
    first["id"] = "mutated"
    assert (await status_of(cache))[1] == answer("x" * 200)


@pytest.mark.parametrize(
    "bad",
    [
        answer(finish="length"),
        answer(finish=None),  # a stream cut before its end
        answer(finish="content_filter"),
        {"error": {"message": "boom"}},
        {**answer(), "choices": []},
    ],
)
async def test_errors_partial_and_truncated_answers_are_never_stored(cache: ResponseCache, bad: dict[str, Any]) -> None:
    await fill(cache, bad)
    assert (await status_of(cache))[0] == "miss"


async def test_no_cache_skips_the_read_but_writes_and_no_store_skips_both(cache: ResponseCache) -> None:
    await fill(cache, answer("old"))
    assert await fill(cache, answer("new"), read=False) == "bypass"  # Cache-Control: no-cache
    assert (await status_of(cache))[1] == answer("new")
    assert await fill(cache, answer("ignored"), read=False, write=False) == "bypass"  # no-store
    assert (await status_of(cache))[1] == answer("new")
    assert (await status_of(cache, read=False))[0] == "bypass"


async def test_ttl_zero_means_do_not_store_and_entries_expire(cache: ResponseCache) -> None:
    await fill(cache, answer(), ttl_s=0)
    assert (await status_of(cache))[0] == "miss"
    await fill(cache, answer(), ttl_s=0.2)
    deadline = time.monotonic() + 5
    while (await status_of(cache))[0] == "hit":
        assert time.monotonic() < deadline, "entry did not expire"
        await asyncio.sleep(0.05)


async def test_scopes_never_share_entries(cache: ResponseCache) -> None:
    await fill(cache, answer("for a"), scope="k:a")
    assert (await status_of(cache, scope="k:b"))[0] == "miss"
    assert (await status_of(cache, scope="k:a"))[1] == answer("for a")


async def test_concurrent_identical_misses_make_one_upstream_call(cache: ResponseCache) -> None:
    calls = 0
    release = asyncio.Event()

    async def request() -> str:
        nonlocal calls
        async with cache.lookup(make_key(BODY, scope="k:a"), wait_s=5) as lookup:
            if lookup.response is not None:
                return "hit"
            calls += 1
            await release.wait()  # the upstream call, held until every follower is waiting
            lookup.fill(answer())
            return lookup.status

    tasks = [asyncio.create_task(request()) for _ in range(20)]
    async with asyncio.timeout(5):
        while calls == 0:  # poll until the leader is in its upstream call
            await asyncio.sleep(0.01)
    release.set()  # followers that have not looked yet still find the leader's answer or the stored value
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert sorted(results) == ["hit"] * 19 + ["miss"]


async def test_when_the_leader_fails_followers_call_upstream_themselves(cache: ResponseCache) -> None:
    started = asyncio.Event()
    calls = 0

    async def leader() -> None:
        async with cache.lookup(make_key(BODY, scope="k:a"), wait_s=5):
            started.set()
            await asyncio.sleep(0)
            raise RuntimeError("upstream failed")

    async def follower() -> str:
        nonlocal calls
        await started.wait()
        async with cache.lookup(make_key(BODY, scope="k:a"), wait_s=5) as lookup:
            if lookup.response is None:
                calls += 1
            return lookup.status

    results = await asyncio.gather(leader(), follower(), follower(), return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert results[1:] == ["miss", "miss"]
    assert calls == 2


async def test_unreadable_entries_are_misses(cache: ResponseCache, backend: CacheBackend) -> None:
    key = make_key(BODY, scope="k:a")
    await backend.set(key.value_key(cache.prefix), b"zgarbage", 60)
    assert (await status_of(cache))[0] == "miss"


async def test_read_or_lock_is_exclusive_and_the_store_releases_it(backend: CacheBackend) -> None:
    value, token = await backend.get_or_lock("v:{x}", "lock:{x}", 5)
    assert value is None
    assert token is not None
    assert await backend.get_or_lock("v:{x}", "lock:{x}", 5) == (None, None)  # held by the first caller
    await backend.unlock("lock:{x}", "not-the-token")
    assert await backend.get_or_lock("v:{x}", "lock:{x}", 5) == (None, None)  # only the owner releases it
    await backend.set("v:{x}", b"answer", 60, unlock=("lock:{x}", token))  # stored and released in one step
    assert await backend.get_or_lock("v:{x}", "lock:{x}", 5) == (b"answer", None)  # a hit takes no lock
    _, again = await backend.get_or_lock("v:{x}:other", "lock:{x}", 5)
    assert again is not None
    await backend.unlock("lock:{x}", again)
    assert (await backend.get_or_lock("v:{x}:other", "lock:{x}", 5))[1] is not None


@pytest.mark.parametrize("outcome", ["not cacheable", "failed"])
async def test_a_leader_without_a_stored_answer_releases_the_replicas_lock(
    cache: ResponseCache, backend: CacheBackend, outcome: str
) -> None:
    key = make_key(BODY, scope=f"k:release-{outcome.replace(' ', '-')}")
    with pytest.raises(RuntimeError) if outcome == "failed" else contextlib.nullcontext():
        async with cache.lookup(key, wait_s=5) as lookup:
            assert lookup.status == "miss"
            if outcome == "failed":
                raise RuntimeError("the upstream call failed")
            lookup.fill(answer(finish="length"))  # a cut answer is never stored
    await cache.drain()
    # Nobody holds the lock any more: the next replica's read takes it instead of polling for lock_wait_s.
    value, token = await backend.get_or_lock(key.value_key(cache.prefix), key.lock_key(cache.prefix), 5)
    assert value is None
    assert token is not None


async def write_three_together(backend: CacheBackend, name: str) -> None:
    # a value and its lock share a hash tag, as the cache's own keys do (one slot on a Cluster)
    _, token = await backend.get_or_lock(f"v:{{{name}}}:a", f"lock:{{{name}}}", 5)
    assert token is not None
    writes = [
        Write(f"v:{{{name}}}:a", b"A", 60, (f"lock:{{{name}}}", token)),
        Write(f"v:{{{name}}}:b", b"B", 60),
        Write(f"v:{{{name}}}:c", b"C", 0),  # a ttl of 0 stores nothing
    ]
    await backend.set_many(writes)
    assert [await backend.get(f"v:{{{name}}}:{x}") for x in "abc"] == [b"A", b"B", None]
    assert (await backend.get_or_lock(f"v:{{{name}}}:d", f"lock:{{{name}}}", 5))[1] is not None  # released by the write


async def test_writes_batched_together_each_land(backend: CacheBackend) -> None:
    await write_three_together(backend, "batch")


@pytest.mark.redis
async def test_a_batch_of_writes_survives_redis_losing_its_scripts(redis_url: str) -> None:
    backend = RedisCache(RedisEndpoint(redis_url, timeout_s=1.0))
    try:
        await backend.get_or_lock("v:warm", "lock:warm", 5)  # the scripts are loaded...
        async with Redis.from_url(redis_url) as raw:
            await raw.script_flush()  # ...and lost, as after a restart: the batch's EVALSHA fails with NOSCRIPT
        await write_three_together(backend, "noscript")
    finally:
        await backend.aclose()


@pytest.mark.redis
async def test_two_replicas_share_one_upstream_call_through_the_lock(redis_url: str) -> None:
    """Two ResponseCache instances on one Redis stand for two gateway processes (the e2e test runs real ones)."""
    replicas = [
        ResponseCache(RedisCache(RedisEndpoint(redis_url, timeout_s=1.0)), ttl_s=60, max_ttl_s=60, lock_wait_s=5)
        for _ in range(2)
    ]
    key = make_key(BODY, scope="k:a")
    leading = asyncio.Event()
    calls = 0

    async def on(replica: ResponseCache, wait_for_leader: bool) -> str:
        nonlocal calls
        if wait_for_leader:
            await leading.wait()
        async with replica.lookup(key, wait_s=5) as lookup:
            if lookup.response is not None:
                return "hit"
            calls += 1
            leading.set()
            await asyncio.sleep(0.3)  # the upstream call (its latency is what the other replica waits out)
            lookup.fill(answer())
            return "miss"

    results = await asyncio.gather(on(replicas[0], False), on(replicas[1], True))
    assert results == ["miss", "hit"]
    assert calls == 1
    for replica in replicas:
        await replica.aclose()
