"""`Spend`: what each API key and tenant spends, and their budgets (USD per day, month or rolling 24 hours).

Every request's real cost is added to its key's and its tenant's running totals (today, this month, and the
rolling window when a budget uses one) on the limits backend. A request of a key or tenant with a budget is
admitted only if the worst case fits: its prompt estimate at the highest input price, plus its output cap at the
highest output price, of the deployments its model may call. That worst case is held while the request runs
and replaced by the real cost afterwards (batched, in the background, like token settlements), so concurrent
requests on every replica together never spend more than the budget, unless one request's real cost exceeds its
hold (a request that sets no output cap can run past the default the hold assumes).

When the shared backend is down and budgets fail open, each replica decides alone from the spend it last read
there plus what it has charged since, and writes the spend it made meanwhile back when the backend returns.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from gateway.core.batch import Batcher
from gateway.core.errors import BudgetExceeded, BudgetState, ServiceUnavailable
from gateway.core.types import random_hex
from gateway.ratelimit.budget import (
    BUCKET_S,
    BudgetBackend,
    Counter,
    CounterKind,
    Reading,
    SpendSettlement,
    period_tag,
)
from gateway.ratelimit.policy import estimate_tokens

__all__ = ["BudgetLike", "BudgetRule", "Spend", "SpendTicket", "nano_usd"]

log = logging.getLogger("ultra_gateway")

Period = Literal["day", "month", "rolling_24h"]
_KIND: dict[str, CounterKind] = {"day": "day", "month": "month", "rolling_24h": "roll"}
SETTLE_BATCH_S = 0.005
OWED_MAX = 100_000


def nano_usd(usd: float) -> int:
    return math.ceil(usd * 1e9 - 1e-6)


class BudgetLike(Protocol):
    """A budget: `usd` per `period` (the configuration's `BudgetSettings`, or a `BudgetRule`)."""

    @property
    def usd(self) -> float: ...

    @property
    def period(self) -> Period: ...


@dataclass(frozen=True, slots=True)
class BudgetRule:
    usd: float
    period: Period


@dataclass(slots=True)
class SpendTicket:
    """One request's counters and its hold. Settle exactly once."""

    counters: Sequence[Counter]
    reservation: str = ""  # "" : nothing held (no budget applies, or the backend was down)
    reserved: int = 0
    budget: BudgetState | None = None
    settled: bool = False
    local: bool = False  # admitted by this replica alone, while the shared backend was down


@dataclass(slots=True)
class _Scope:
    label: str  # "key" or "tenant"
    name: str
    rule: BudgetLike | None


@dataclass(slots=True)
class _Plan:
    counters: list[Counter]
    scopes: list[tuple[_Scope, int]] = field(default_factory=list)  # budgeted scope, index of its counter

    @property
    def budgeted(self) -> bool:
        return bool(self.scopes)


def _reset_s(period: Period, now: float) -> float | None:
    if period == "rolling_24h":
        return None
    if period == "day":
        return 86_400 - now % 86_400
    date = datetime.fromtimestamp(now, UTC)
    days = calendar.monthrange(date.year, date.month)[1]
    start = datetime(date.year, date.month, 1, tzinfo=UTC).timestamp()
    return start + days * 86_400 - now


class Spend:
    def __init__(
        self,
        backend: BudgetBackend,
        *,
        tenants: Mapping[str, BudgetLike] | None = None,
        prices: Callable[[str], tuple[float, float]],
        fail_open: bool = True,
        default_output_tokens: int = 1024,
        reservation_ttl_s: float = 900.0,
    ) -> None:
        self.backend = backend
        self.tenants = dict(tenants or {})
        self.prices = prices
        self.fail_open = fail_open
        self.default_output_tokens = default_output_tokens
        self.reservation_ms = int(reservation_ttl_s * 1000)
        self._plans: dict[tuple[str | None, BudgetLike | None, str | None], _Plan] = {}
        self._settlements: Batcher[SpendSettlement] = Batcher(self._settle_many, delay_s=SETTLE_BATCH_S)
        self._seen: dict[str, tuple[int, int]] = {}  # counter -> (period, used) at the last shared admission
        self._local: dict[str, tuple[int, int]] = {}  # counter -> (period, charged here while the backend was down)
        self._owed: list[SpendSettlement] = []  # spend not yet written to the shared backend
        self._replay: asyncio.Task[None] | None = None

    def reconfigure(self, *, tenants: Mapping[str, BudgetLike], prices: Callable[[str], tuple[float, float]]) -> None:
        """New tenant budgets and prices (a configuration reload); the totals stay where they are."""
        self.tenants = dict(tenants)
        self.prices = prices
        self._plans = {}

    def plan(self, key: str | None, key_budget: BudgetLike | None, tenant: str | None) -> _Plan:
        """The counters of a key and its tenant (day and month always; the rolling window when a budget uses
        it), the budgeted ones carrying their limit."""
        cache_key = (key, key_budget, tenant)
        plan = self._plans.get(cache_key)
        if plan is not None:
            return plan
        scopes = []
        if key is not None:
            scopes.append(_Scope("key", key, key_budget))
        if tenant is not None:
            scopes.append(_Scope("tenant", tenant, self.tenants.get(tenant)))
        plan = _Plan([])
        for scope in scopes:
            kinds: list[CounterKind] = ["day", "month"]
            budget_kind = _KIND[scope.rule.period] if scope.rule is not None else None
            if budget_kind == "roll":
                kinds.append("roll")
            for kind in kinds:
                limit = nano_usd(scope.rule.usd) if scope.rule is not None and kind == budget_kind else 0
                if limit:
                    plan.scopes.append((scope, len(plan.counters)))
                plan.counters.append(Counter(f"{scope.label}:{scope.name}", kind, limit))
        if len(self._plans) > 10_000:
            self._plans.clear()
        self._plans[cache_key] = plan
        return plan

    def hold(self, model: str, body: Mapping[str, Any]) -> int:
        """The worst-case cost of a request, in nano-USD."""
        prompt, total = estimate_tokens(body, default_output_tokens=self.default_output_tokens)
        input_price, output_price = self.prices(model)
        return math.ceil((prompt * input_price + (total - prompt) * output_price) * 1000)

    async def admit(
        self,
        *,
        key: str | None,
        key_budget: BudgetLike | None,
        tenant: str | None,
        model: str,
        body: Mapping[str, Any],
    ) -> SpendTicket:
        """Admit or raise BudgetExceeded (429) / ServiceUnavailable (backend down and fail-closed)."""
        plan = self.plan(key, key_budget, tenant)
        if not plan.budgeted:
            return SpendTicket(plan.counters)
        reserve = self.hold(model, body)
        reservation = random_hex(32)
        try:
            reading = await self.backend.admit(
                plan.counters, reservation=reservation, reserve=reserve, reserve_ms=self.reservation_ms
            )
        except ServiceUnavailable as exc:
            if not self.fail_open:
                raise ServiceUnavailable(
                    "Budgets cannot be checked right now; please retry shortly.", retry_after=exc.retry_after
                ) from None
            return self._admit_locally(plan, reserve)
        if not reading.allowed:
            raise self._refusal(plan, reading, reserve)
        for i, counter in enumerate(plan.counters):  # what a fail-over starts from
            if counter.limit:
                self._seen[counter.state] = (period_tag(counter.kind, reading.now), reading.used[i] + reserve)
                self._local.pop(counter.state, None)
        if self._owed and self._replay is None:  # the backend is back: write what was spent while it was away
            self._replay = asyncio.get_running_loop().create_task(self._settle_many([]))
            self._replay.add_done_callback(self._replayed)
        return SpendTicket(plan.counters, reservation, reserve, self._binding(plan, reading, reserve))

    def _admit_locally(self, plan: _Plan, reserve: int) -> SpendTicket:
        """The shared backend is down and budgets fail open: decide from the spend this replica last read from it
        plus what it has charged since, so one replica never spends more than what was left when it last looked
        (a scope it never saw starts from zero). What is spent meanwhile is added to the shared totals when the
        backend is back."""
        now = time.time()
        used = []
        for counter in plan.counters:
            seen = self._seen.get(counter.state)
            tag = period_tag(counter.kind, now)
            base = seen[1] if seen is not None and (counter.kind == "roll" or seen[0] == tag) else 0
            local = self._local.get(counter.state)
            used.append(base + (local[1] if local is not None and local[0] == tag else 0))
        reading = Reading(True, now, used, [0] * len(used))
        if any(c.limit and used[i] + reserve > c.limit for i, c in enumerate(plan.counters)):
            raise self._refusal(plan, reading, reserve)
        self._charge_locally(plan.counters, reserve, now)
        ticket = SpendTicket(plan.counters, "", reserve, self._binding(plan, reading, reserve))
        ticket.local = True
        return ticket

    def _charge_locally(self, counters: Sequence[Counter], amount: int, now: float) -> None:
        for counter in counters:
            if counter.limit:
                tag = period_tag(counter.kind, now)
                local = self._local.get(counter.state)
                held = local[1] if local is not None and local[0] == tag else 0
                self._local[counter.state] = (tag, held + amount)

    def _states(self, plan: _Plan, reading: Reading, reserve: int) -> list[tuple[BudgetState, int]]:
        out = []
        for scope, index in plan.scopes:
            assert scope.rule is not None
            limit = plan.counters[index].limit
            left = limit - reading.used[index] - reserve
            state = BudgetState(
                scope.label,
                scope.rule.period,
                scope.rule.usd,
                max(0, left) / 1e9,
                _reset_s(scope.rule.period, reading.now),
            )
            out.append((state, left))
        return out

    def _binding(self, plan: _Plan, reading: Reading, reserve: int) -> BudgetState:
        return min(self._states(plan, reading, reserve), key=lambda s: s[1])[0]

    def _refusal(self, plan: _Plan, reading: Reading, reserve: int) -> BudgetExceeded:
        refused = [
            (plan.counters[i].limit - reading.used[i], scope)
            for scope, i in plan.scopes
            if reading.used[i] + reserve > plan.counters[i].limit
        ]
        left_n, scope = min(refused, key=lambda r: r[0])
        assert scope.rule is not None
        left = max(0, left_n) / 1e9
        reset = _reset_s(scope.rule.period, reading.now)
        retry = reset if reset is not None else BUCKET_S - reading.now % BUCKET_S
        message = (
            f"Budget exceeded for {scope.label} '{scope.name}': {scope.rule.period} budget ${scope.rule.usd:g}, "
            f"${left:.6f} left, and this request may cost up to ${reserve / 1e9:.6f}. "
            "Lower max_tokens, or wait for the budget to free up."
        )
        state = BudgetState(scope.label, scope.rule.period, scope.rule.usd, left, reset)
        return BudgetExceeded(message, retry_after=retry, budget=state)

    def settle_soon(self, ticket: SpendTicket, cost_usd: float | None) -> None:
        """Replace the hold with the real cost (None: unknown, the hold stays charged), batched."""
        if ticket.settled or not ticket.counters:
            return
        ticket.settled = True
        if cost_usd is None:
            return
        actual = nano_usd(cost_usd)
        if ticket.local:
            self._charge_locally(ticket.counters, actual - ticket.reserved, time.time())
        if not ticket.reservation and actual <= 0:
            return
        self._settlements.add(SpendSettlement(ticket.counters, ticket.reservation, actual))

    def _replayed(self, _: asyncio.Task[None]) -> None:
        self._replay = None

    async def _settle_many(self, settlements: list[SpendSettlement]) -> None:
        owed, self._owed = self._owed, []
        try:
            await self.backend.settle_many([*owed, *settlements])
        except ServiceUnavailable:
            # Spend accounted after the fact is kept for when the backend is back (bounded); a hold that cannot
            # be settled stays charged on the backend until its period ends, as when a client leaves mid-stream.
            self._owed = [*owed, *(s for s in settlements if not s.reservation)][-OWED_MAX:]
            log.debug("spend settlement deferred: the limits backend is unavailable")

    async def usage(self, key: str | None, key_budget: BudgetLike | None, tenant: str | None) -> dict[str, Any]:
        """What `GET /v1/usage` shows: per scope and period, USD spent (in-flight holds included), held, and the
        budget with what is left."""
        plan = self.plan(key, key_budget, tenant)
        reading = await self.backend.read(plan.counters)
        out: dict[str, Any] = {}
        names = {"day": "day", "month": "month", "roll": "rolling_24h"}
        for i, counter in enumerate(plan.counters):
            label, _, name = counter.scope.partition(":")
            section = out.setdefault(label, {"name": name, "periods": {}})
            period = names[counter.kind]
            entry: dict[str, Any] = {
                "spent_usd": reading.used[i] / 1e9,
                "in_flight_usd": max(0, reading.held[i]) / 1e9,
            }
            if counter.limit:
                entry["budget_usd"] = counter.limit / 1e9
                entry["remaining_usd"] = max(0, counter.limit - reading.used[i]) / 1e9
                entry["resets_in_s"] = _reset_s(period, reading.now)  # type: ignore[arg-type]
            section["periods"][period] = entry
        return out

    @property
    def busy(self) -> bool:
        return self._settlements.busy

    async def drain(self, timeout_s: float = 2.0) -> None:
        await self._settlements.drain(timeout_s)
        if self._owed:
            await self._settle_many([])

    async def ping(self) -> bool:
        return await self.backend.ping()

    async def aclose(self) -> None:
        await self.drain()
        await self.backend.aclose()
