"""One contract for both spend backends: memory (one process) and Redis (a real redis-server, the Lua script).

The memory backend takes a clock, so period changes are tested on it directly; the Redis backend uses Redis's
own clock, and the same assertions about holds, settlement and refusal run against both.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from gateway._redis import RedisEndpoint
from gateway.core.errors import BudgetExceeded
from gateway.http.render import error_headers
from gateway.ratelimit.budget import BUCKET_S, BudgetBackend, Counter, MemoryBudgets, RedisBudgets, SpendSettlement
from gateway.ratelimit.spend import BudgetRule, Spend, nano_usd

pytestmark = pytest.mark.timeout(30)

USD = 1_000_000_000


# Redis three ways: one server, a Cluster of three masters (`redis+cluster://`), a master behind Sentinel.
REDIS_URL_FIXTURE = {"redis": "redis_url", "redis-cluster": "redis_cluster_url", "redis-sentinel": "redis_sentinel_url"}


@pytest.fixture(params=["memory", *(pytest.param(name, marks=pytest.mark.redis) for name in REDIS_URL_FIXTURE)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[BudgetBackend]:
    if request.param == "memory":
        store: BudgetBackend = MemoryBudgets()
    else:
        url = request.getfixturevalue(REDIS_URL_FIXTURE[request.param])
        store = RedisBudgets(RedisEndpoint(url, timeout_s=1.0, decode_responses=True))
    yield store
    await store.aclose()


def counters(limit_usd: float, kind: str = "day") -> list[Counter]:
    other = "month" if kind != "month" else "day"
    return [Counter("key:k", kind, nano_usd(limit_usd)), Counter("key:k", other)]  # type: ignore[arg-type]


async def admit(store: BudgetBackend, cs: list[Counter], reserve: int) -> tuple[bool, str]:
    reservation = uuid.uuid4().hex
    reading = await store.admit(cs, reservation=reservation, reserve=reserve, reserve_ms=60_000)
    return reading.allowed, reservation


@pytest.mark.parametrize("kind", ["day", "month", "roll"])
async def test_holds_never_pass_the_limit_and_settlement_frees_the_difference(
    backend: BudgetBackend, kind: str
) -> None:
    cs = counters(10, kind)
    held = []
    for _ in range(3):
        ok, reservation = await admit(backend, cs, 3 * USD)
        assert ok
        held.append(reservation)
    assert not (await admit(backend, cs, 3 * USD))[0]  # 9 held, 3 more would make 12 > 10
    assert (await admit(backend, cs, 1 * USD))[0]  # exactly 10
    assert not (await admit(backend, cs, 1))[0]
    # the three 3-dollar requests really cost 1 each: 6 dollars come back
    await backend.settle_many([SpendSettlement(cs, r, 1 * USD) for r in held])
    reading = await backend.read(cs)
    assert reading.used == [4 * USD, 4 * USD]  # 3 settled + 1 still held, on both the budget and the other counter
    assert reading.held == [1 * USD, 1 * USD]
    # settling again changes nothing
    await backend.settle_many([SpendSettlement(cs, held[0], 0)])
    assert (await backend.read(cs)).used == [4 * USD, 4 * USD]
    assert (await admit(backend, cs, 6 * USD))[0]
    assert not (await admit(backend, cs, 1))[0]


async def test_accounting_without_a_budget_adds_the_real_cost(backend: BudgetBackend) -> None:
    cs = [Counter("tenant:t", "day"), Counter("tenant:t", "month")]
    await backend.settle_many([SpendSettlement(cs, "", 250), SpendSettlement(cs, "", 750)])
    reading = await backend.read(cs)
    assert reading.used == [1000, 1000]
    assert reading.held == [0, 0]


async def test_concurrent_admissions_admit_exactly_what_fits(backend: BudgetBackend) -> None:
    cs = counters(5)
    results = await asyncio.gather(*(admit(backend, cs, USD // 2) for _ in range(40)))
    assert sum(ok for ok, _ in results) == 10


async def test_a_new_day_starts_from_zero_and_late_settlements_are_dropped() -> None:
    now = [86_400 * 20_000 + 100.0]
    store = MemoryBudgets(clock=lambda: now[0])
    cs = counters(2, "day")
    ok, reservation = await admit(store, cs, 2 * USD)
    assert ok
    assert not (await admit(store, cs, 1))[0]
    now[0] += 86_400  # the next day
    assert (await store.read(cs)).used[0] == 0
    await store.settle_many([SpendSettlement(cs, reservation, USD)])  # yesterday's request: not today's spend
    assert (await store.read(cs)).used[0] == 0
    assert (await admit(store, cs, 2 * USD))[0]


async def test_the_rolling_window_forgets_spend_older_than_24_hours() -> None:
    now = [1_800_000_000.0]
    store = MemoryBudgets(clock=lambda: now[0])
    cs = counters(2, "roll")
    assert (await admit(store, cs, 2 * USD))[0]
    now[0] += 23 * 3600
    assert not (await admit(store, cs, 1))[0]
    now[0] += 3600 + BUCKET_S
    assert (await admit(store, cs, 2 * USD))[0]


async def test_spend_refuses_with_budget_exceeded_and_headers(backend: BudgetBackend) -> None:
    prices = {"m": (1_000_000.0, 2_000_000.0)}  # 1 USD per input token, 2 per output token
    spend = Spend(backend, tenants={"acme": BudgetRule(100, "month")}, prices=prices.__getitem__)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    prompt_estimate = spend.hold("m", body) // USD - 20  # the hold: prompt estimate x 1 + 10 x 2
    assert prompt_estimate > 0
    ticket = await spend.admit(key="k", key_budget=BudgetRule(50, "day"), tenant="acme", model="m", body=body)
    assert ticket.budget is not None
    assert ticket.budget.scope == "key"
    assert ticket.budget.remaining_usd == pytest.approx(50 - spend.hold("m", body) / USD)
    while True:
        try:
            await spend.admit(key="k", key_budget=BudgetRule(50, "day"), tenant="acme", model="m", body=body)
        except BudgetExceeded as exc:
            refused = exc
            break
    assert refused.code == "budget_exceeded"
    assert refused.status == 429
    headers = error_headers(refused)
    assert headers["x-ratelimit-limit-budget-usd"] == "50"
    assert float(headers["x-ratelimit-remaining-budget-usd"]) < spend.hold("m", body) / USD
    assert "retry-after" in headers
    # another key of the same tenant is bound by the tenant's budget, not by the first key's
    other = await spend.admit(key="k2", key_budget=None, tenant="acme", model="m", body=body)
    assert other.budget is not None
    assert other.budget.scope == "tenant"
    await spend.aclose()
