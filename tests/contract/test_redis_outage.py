"""Redis going away and coming back, on a real redis-server this test kills and restarts.

Limits fail open to a local limiter (or closed with a 503), the cache turns into a bypass, nothing waits past
the Redis budget, and both recover by themselves once the server is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from gateway._redis import RedisEndpoint
from gateway.cache.keys import make_key
from gateway.cache.redis import RedisCache
from gateway.cache.responses import ResponseCache
from gateway.core.errors import BudgetExceeded, RateLimited, ServiceUnavailable
from gateway.http.render import limit_headers
from gateway.ratelimit.budget import RedisBudgets
from gateway.ratelimit.limiter import RateLimiter, key_rule
from gateway.ratelimit.redis import RedisLimiter
from gateway.ratelimit.spend import BudgetRule, Spend, SpendTicket
from tests._redis import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
}


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Poll a condition until it holds, under a bounded deadline."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def endpoint(server: RedisServer, *, decode: bool) -> RedisEndpoint:
    return RedisEndpoint(server.url, timeout_s=0.2, decode_responses=decode, failures=2, cooldown_s=0.3)


async def test_limits_fail_open_to_a_local_limiter_and_recover(redis_server_owned: RedisServer) -> None:
    limiter = RateLimiter(RedisLimiter(endpoint(redis_server_owned, decode=True)), fail_open=True)
    key = key_rule("k", rpm=3, tpm=None)
    ticket = await limiter.admit(key=key, model="m", body=BODY)
    assert not ticket.decision.degraded
    redis_server_owned.kill()
    started = time.monotonic()
    outcomes = []
    for _ in range(4):
        try:
            outcomes.append((await limiter.admit(key=key, model="m", body=BODY)).decision.degraded)
        except ServiceUnavailable:
            pytest.fail("fail-open must not raise")
        except Exception as exc:  # the local limiter still limits, counting the one Redis admitted
            outcomes.append(type(exc).__name__)
    assert time.monotonic() - started < 2.0  # no request waited on the dead server
    assert outcomes == [True, True, "RateLimited", "RateLimited"]
    redis_server_owned.start()

    async def shared_again() -> bool:
        try:
            return not (
                await limiter.admit(key=key_rule("k2", rpm=100, tpm=None), model="m", body=BODY)
            ).decision.degraded
        except ServiceUnavailable:
            return False

    await eventually(shared_again)
    await limiter.aclose()


@pytest.mark.parametrize("outage", ["kill", "pause"])
async def test_one_replica_never_admits_more_than_the_limit_across_an_outage(
    redis_server_owned: RedisServer, outage: str
) -> None:
    """30 a minute: Redis admits the 30, then goes away; the local limiter knows this replica used them."""
    limiter = RateLimiter(RedisLimiter(endpoint(redis_server_owned, decode=True)), fail_open=True)
    key = key_rule("burst", rpm=30, tpm=1_000_000)
    started = time.monotonic()
    admitted = 0
    for _ in range(30):
        ticket = await limiter.admit(key=key, model="m", body=BODY)
        assert not ticket.decision.degraded
        await limiter.settle(ticket, 10)
        admitted += 1
    redis_server_owned.kill() if outage == "kill" else redis_server_owned.pause()
    try:
        for _ in range(40):
            try:
                ticket = await limiter.admit(key=key, model="m", body=BODY)
                assert ticket.decision.degraded
                admitted += 1
            except RateLimited:
                pass
    finally:
        if outage == "pause":
            redis_server_owned.resume()
    elapsed = time.monotonic() - started
    # The limit, plus what 30/min lets back in over the test's own duration (one every 2 s).
    assert admitted <= 30 + 1 + int(elapsed / 2), (admitted, elapsed)
    await limiter.aclose()


async def test_limits_fail_closed_answer_503_quickly(redis_server_owned: RedisServer) -> None:
    limiter = RateLimiter(RedisLimiter(endpoint(redis_server_owned, decode=True)), fail_open=False)
    key = key_rule("k", rpm=3, tpm=None)
    await limiter.admit(key=key, model="m", body=BODY)
    redis_server_owned.kill()
    for _ in range(5):
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as caught:
            await limiter.admit(key=key, model="m", body=BODY)
        assert time.monotonic() - started < 0.5
        assert caught.value.status == 503
        assert caught.value.retry_after is not None
        assert "redis://" not in caught.value.message
    await limiter.aclose()


async def test_cache_bypasses_while_down_and_resumes(redis_server_owned: RedisServer) -> None:
    cache = ResponseCache(RedisCache(endpoint(redis_server_owned, decode=False)), ttl_s=60, max_ttl_s=60)
    key = make_key(BODY, scope="k:a")
    async with cache.lookup(key, wait_s=5) as lookup:
        assert lookup.status == "miss"
        lookup.fill(ANSWER)
    await cache.drain()
    redis_server_owned.kill()
    for _ in range(5):
        started = time.monotonic()
        async with cache.lookup(key, wait_s=5) as lookup:
            assert lookup.status == "bypass"
            assert not lookup.fill(ANSWER)
        assert time.monotonic() - started < 0.5
    redis_server_owned.start()  # empty: persistence is off

    async def caching_again() -> bool:
        async with cache.lookup(key, wait_s=5) as lookup:
            if lookup.status == "miss":
                lookup.fill(ANSWER)
        await cache.drain()
        async with cache.lookup(key, wait_s=5) as lookup:
            return lookup.status == "hit"

    await eventually(caching_again)
    await cache.aclose()


async def test_readiness_ping_flips_and_recovers(redis_server_owned: RedisServer) -> None:
    ep = endpoint(redis_server_owned, decode=True)
    assert await ep.ping()
    redis_server_owned.kill()
    assert not await ep.ping()
    assert ep.state == "closed"  # one failure is not an outage
    assert not await ep.ping()
    assert ep.state == "open"
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        await ep.call(lambda client: client.get("x"))  # open: fails without touching the network
    assert time.monotonic() - started < 0.05
    redis_server_owned.start()
    await eventually(ep.ping)
    assert ep.state == "closed"
    await ep.aclose()


async def test_script_reloads_after_script_flush(redis_url: str, redis_session: RedisServer) -> None:
    limiter = RedisLimiter(RedisEndpoint(redis_url, timeout_s=1.0, decode_responses=True))
    rate = RateLimiter(limiter)
    await rate.admit(key=key_rule("f", rpm=10, tpm=None), model="m", body=BODY)
    assert redis_session.command("SCRIPT", "FLUSH").startswith(b"+OK")
    ticket = await rate.admit(key=key_rule("f", rpm=10, tpm=None), model="m", body=BODY)
    assert not ticket.decision.degraded
    assert limit_headers(ticket.limits)["x-ratelimit-remaining-requests"] == "8"
    await rate.aclose()


async def test_a_hung_redis_costs_one_budget_per_call_and_never_double_charges(
    redis_server_owned: RedisServer,
) -> None:
    """SIGSTOP: the socket stays open and nothing answers. Calls give up after their budget (no retry, so a
    script that might still run later is not sent twice), then the breaker answers at once."""
    limiter = RateLimiter(RedisLimiter(endpoint(redis_server_owned, decode=True)), fail_open=True)
    key = key_rule("hung", rpm=10, tpm=None)
    await limiter.admit(key=key, model="m", body=BODY)
    redis_server_owned.pause()
    try:
        timings = []
        for _ in range(4):
            started = time.monotonic()
            ticket = await limiter.admit(key=key, model="m", body=BODY)
            timings.append(time.monotonic() - started)
            assert ticket.decision.degraded
        assert all(t < 0.6 for t in timings), timings
        assert timings[-1] < 0.05  # breaker open: no network at all
    finally:
        redis_server_owned.resume()

    async def recovered() -> bool:
        try:
            return not (await limiter.admit(key=key, model="m", body=BODY)).decision.degraded
        except RateLimited:  # still degraded, and the local limiter has counted this replica's 10 already
            return False

    await eventually(recovered)
    # Redis saw: the first call, the two that timed out (each sent once, maybe applied after SIGCONT), the
    # recovery probe and this one. With redis-py's default retries it would have seen up to ten per timeout.
    ticket = await limiter.admit(key=key, model="m", body=BODY)
    remaining = int(limit_headers(ticket.limits)["x-ratelimit-remaining-requests"])
    assert 10 - 1 - 2 - 1 - 1 <= remaining <= 10 - 1 - 1 - 1
    await limiter.aclose()


async def test_budgets_fail_open_from_the_last_spend_seen_and_account_the_outage_later(
    redis_server_owned: RedisServer,
) -> None:
    """A 10-hold budget: Redis admits 4, goes away; this replica admits the 6 that were left by its own count,
    refuses the 11th, and once Redis is back the spend it made meanwhile reaches the shared totals."""
    prices = {"m": (1_000_000.0, 1_000_000.0)}
    spend = Spend(RedisBudgets(endpoint(redis_server_owned, decode=True)), prices=prices.__getitem__, fail_open=True)
    hold = spend.hold("m", BODY)
    rule = BudgetRule(10 * hold / 1e9, "day")

    async def admit() -> SpendTicket:
        return await spend.admit(key="k", key_budget=rule, tenant=None, model="m", body=BODY)

    for _ in range(4):
        ticket = await admit()
        assert not ticket.local
        spend.settle_soon(ticket, hold / 1e9)  # each cost exactly its hold
    await spend.drain()
    redis_server_owned.kill()
    local = []
    for _ in range(6):
        ticket = await admit()
        assert ticket.local
        local.append(ticket)
    with pytest.raises(BudgetExceeded):
        await admit()
    for ticket in local:
        spend.settle_soon(ticket, hold / 1e9)
    await spend.drain()
    redis_server_owned.start()  # an empty Redis (no persistence): only the outage's spend can reach it

    async def accounted() -> bool:
        await spend.drain()
        try:
            reading = await spend.backend.read(spend.plan("k", rule, None).counters)
        except ServiceUnavailable:
            return False
        return reading.used[0] == 6 * hold

    await eventually(accounted)
    await spend.aclose()
