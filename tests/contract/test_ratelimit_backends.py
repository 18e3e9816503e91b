"""One contract for both limiter backends: memory (one process) and Redis (a real redis-server, the Lua script).

Time does not need faking here: with limits per minute, one emission interval is seconds long, far longer than
a test; refill arithmetic is covered by the Hypothesis properties in tests/unit/test_gcra_properties.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway._redis import RedisEndpoint
from gateway.core.errors import InvalidRequest, RateLimited
from gateway.http.render import error_headers, limit_headers
from gateway.ratelimit.base import LimiterBackend
from gateway.ratelimit.limiter import RateLimiter, key_rule
from gateway.ratelimit.memory import MemoryLimiter
from gateway.ratelimit.policy import MINUTE_US, Check, LimitRule, Rate, per_minute
from gateway.ratelimit.redis import RedisLimiter

pytestmark = pytest.mark.timeout(30)


# Redis three ways: one server, a Cluster of three masters (`redis+cluster://`), a master behind Sentinel.
REDIS_URL_FIXTURE = {"redis": "redis_url", "redis-cluster": "redis_cluster_url", "redis-sentinel": "redis_sentinel_url"}


@pytest.fixture(params=["memory", *(pytest.param(name, marks=pytest.mark.redis) for name in REDIS_URL_FIXTURE)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[LimiterBackend]:
    if request.param == "memory":
        limiter: LimiterBackend = MemoryLimiter()
    else:
        url = request.getfixturevalue(REDIS_URL_FIXTURE[request.param])
        limiter = RedisLimiter(RedisEndpoint(url, timeout_s=1.0, decode_responses=True))
    yield limiter
    await limiter.aclose()


def rule(scope: str, rpm: int | None = None, tpm: int | None = None) -> LimitRule:
    return LimitRule(scope, scope, per_minute(rpm) if rpm else None, per_minute(tpm) if tpm else None)


def checks(r: LimitRule, tokens: int = 0) -> list[Check]:
    out = []
    if r.requests is not None:
        out.append(Check(r, "requests", r.requests, 1))
    if r.tokens is not None:
        out.append(Check(r, "tokens", r.tokens, tokens))
    return out


async def admit(backend: LimiterBackend, cs: Sequence[Check], reserved: int = 0) -> tuple[bool, str]:
    reservation = uuid.uuid4().hex
    outcomes = await backend.admit(cs, reservation=reservation, reserved=reserved, reserve_ms=60_000 if reserved else 0)
    return all(o.allowed for o in outcomes), reservation


async def test_admits_exactly_the_burst_then_refuses_with_the_wait(backend: LimiterBackend) -> None:
    r = rule("key:a", rpm=5)
    remaining = []
    for _ in range(5):
        [outcome] = await backend.admit(checks(r), reservation="x", reserved=0, reserve_ms=0)
        assert outcome.allowed
        remaining.append(outcome.remaining)
    assert remaining == [4, 3, 2, 1, 0]
    [refused] = await backend.admit(checks(r), reservation="x", reserved=0, reserve_ms=0)
    assert not refused.allowed
    assert refused.remaining == 0
    # One request refills every 12 s; the state resets fully one minute after the burst.
    assert 11_000_000 < refused.retry_us <= 12_000_000
    assert 59_000_000 < refused.reset_us <= MINUTE_US


async def test_all_or_nothing_a_token_refusal_does_not_spend_a_request(backend: LimiterBackend) -> None:
    r = rule("key:b", rpm=3, tpm=100)
    ok, _ = await admit(backend, checks(r, tokens=150))
    assert not ok
    outcomes = await backend.admit(checks(r, tokens=10), reservation="y", reserved=0, reserve_ms=0)
    assert [(o.check.dimension, o.allowed, o.remaining) for o in outcomes] == [
        ("requests", True, 2),
        ("tokens", True, 90),
    ]


async def test_reserve_settle_refund_and_double_settle(backend: LimiterBackend) -> None:
    r = rule("key:c", tpm=1000)
    tokens = checks(r, tokens=900)
    ok, reservation = await admit(backend, tokens, reserved=900)
    assert ok
    assert not (await admit(backend, checks(r, tokens=200)))[0]
    assert await backend.settle(tokens, reservation=reservation, actual=300) == 900  # refund 600
    assert await backend.settle(tokens, reservation=reservation, actual=300) is None  # idempotent
    [outcome] = await backend.admit(checks(r, tokens=200), reservation="z", reserved=0, reserve_ms=0)
    assert outcome.allowed
    assert 495 <= outcome.remaining <= 500  # 1000 - 300 - 200, plus whatever refilled meanwhile


async def test_under_estimate_creates_debt(backend: LimiterBackend) -> None:
    r = rule("key:d", tpm=1000)
    ok, reservation = await admit(backend, checks(r, tokens=100), reserved=100)
    assert ok
    await backend.settle(checks(r, tokens=100), reservation=reservation, actual=1100)  # 1000 more than reserved
    [outcome] = await backend.admit(checks(r, tokens=1), reservation="w", reserved=0, reserve_ms=0)
    assert not outcome.allowed
    assert outcome.retry_us > 5_000_000  # about 6 s of debt per 100 tokens over


async def test_concurrent_callers_never_exceed_the_limit(backend: LimiterBackend) -> None:
    # 50 per day with a burst of 50: one refill takes ~29 min, so even a long stall of the machine mid-test
    # cannot let a 51st caller in (at 50 per minute, a 1.2 s stall could, and once did)
    r = LimitRule("key:e", "key:e", Rate(50, 24 * 60 * MINUTE_US, 50))
    results = await asyncio.gather(*(admit(backend, checks(r)) for _ in range(300)))
    assert sum(ok for ok, _ in results) == 50


async def test_keys_never_see_each_others_limits(backend: LimiterBackend) -> None:
    a, b = rule("key:a", rpm=2), rule("key:b", rpm=2)
    assert [(await admit(backend, checks(a)))[0] for _ in range(3)] == [True, True, False]
    [outcome] = await backend.admit(checks(b), reservation="v", reserved=0, reserve_ms=0)
    assert outcome.allowed
    assert outcome.remaining == 1


async def test_facade_429_carries_openai_headers_and_body(backend: LimiterBackend) -> None:
    limiter = RateLimiter(backend, global_rule=rule("global", rpm=100), fallback=MemoryLimiter())
    key = key_rule("team-a", rpm=2, tpm=10_000)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    first = await limiter.admit(key=key, model="m", body=body)
    assert limit_headers(first.limits)["x-ratelimit-limit-requests"] == "2"
    assert limit_headers(first.limits)["x-ratelimit-remaining-requests"] == "1"
    assert limit_headers(first.limits)["x-ratelimit-limit-tokens"] == "10000"
    assert limit_headers(first.limits)["x-ratelimit-reset-requests"] in ("30s", "29.999s")
    await limiter.admit(key=key, model="m", body=body)
    with pytest.raises(RateLimited) as caught:
        await limiter.admit(key=key, model="m", body=body)
    error = caught.value
    assert error.status == 429
    assert error.to_body()["error"]["code"] == "rate_limit_exceeded"
    assert "key 'team-a'" in error.message
    assert error_headers(error)["x-ratelimit-remaining-requests"] == "0"
    assert 29 <= int(error_headers(error)["retry-after"]) <= 30
    assert 29_000 < int(error_headers(error)["retry-after-ms"]) <= 30_000
    # The global limit was charged for the two admitted requests only.
    [global_state] = [o for o in first.decision.outcomes if o.check.rule.scope == "global"]
    assert global_state.remaining == 99


async def test_settlement_through_the_facade_refunds_the_estimate(backend: LimiterBackend) -> None:
    limiter = RateLimiter(backend, fallback=MemoryLimiter(), default_output_tokens=500)
    key = key_rule("team-t", rpm=None, tpm=2000)
    body = {"messages": [{"role": "user", "content": "hello"}]}
    ticket = await limiter.admit(key=key, model="m", body=body)
    assert ticket.reserved > 500
    await limiter.settle(ticket, 10)
    await limiter.settle(ticket, 10)  # a second settlement is a no-op
    after = await limiter.admit(key=key, model="m", body=body)
    remaining = int(limit_headers(after.limits)["x-ratelimit-remaining-tokens"])
    assert 2000 - 10 - after.reserved - 2 <= remaining <= 2000 - 10 - after.reserved + 2


async def settle_three_together(backend: LimiterBackend, name: str, before_settling: Any = None) -> None:
    limiter = RateLimiter(backend, fallback=MemoryLimiter(), default_output_tokens=500)
    key = key_rule(name, rpm=None, tpm=5000)
    body = {"messages": [{"role": "user", "content": "hello"}]}
    tickets = [await limiter.admit(key=key, model="m", body=body) for _ in range(3)]
    if before_settling is not None:
        await before_settling()
    for ticket, actual in zip(tickets, (10, 20, 30), strict=True):
        limiter.settle_soon(ticket, actual)
    limiter.settle_soon(tickets[0], 999)  # settled already: ignored
    assert limiter.busy
    await limiter.drain()
    assert not limiter.busy
    after = await limiter.admit(key=key, model="m", body=body)
    remaining = int(limit_headers(after.limits)["x-ratelimit-remaining-tokens"])
    assert 5000 - 60 - after.reserved - 2 <= remaining <= 5000 - 60 - after.reserved + 2  # every estimate refunded


async def test_settlements_queued_together_are_applied_together(backend: LimiterBackend) -> None:
    await settle_three_together(backend, "team-batch")


@pytest.mark.redis
async def test_a_batch_of_settlements_survives_redis_losing_its_scripts(redis_url: str) -> None:
    backend = RedisLimiter(RedisEndpoint(redis_url, timeout_s=1.0))

    async def lose_scripts() -> None:  # as after a Redis restart: the batch's EVALSHA fails with NOSCRIPT
        async with Redis.from_url(redis_url) as raw:
            await raw.script_flush()

    try:
        await settle_three_together(backend, "team-batch-noscript", lose_scripts)
    finally:
        await backend.aclose()


async def test_a_prompt_larger_than_any_admission_is_a_400_not_a_429(backend: LimiterBackend) -> None:
    limiter = RateLimiter(backend, fallback=MemoryLimiter())
    key = key_rule("small", rpm=None, tpm=100)
    with pytest.raises(InvalidRequest) as caught:
        await limiter.admit(key=key, model="m", body={"messages": [{"role": "user", "content": "x" * 3000}]})
    assert caught.value.param == "messages"
