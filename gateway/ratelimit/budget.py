"""Spend counters and budgets: the two backends (memory: one process; Redis: one Lua script, shared by every
replica), with the same semantics.

Amounts are whole nano-USD (1e-9 USD), so every quantity is an exact integer in Python and in Lua's doubles (up to
about 9 million USD per counter). A counter is one scope (`key:NAME`, `tenant:NAME`) over one period:

- `day`, `month`: the UTC calendar day or month. State: the period it belongs to, what was used in it (settled
  costs plus the holds of requests in flight) and what is held. A new period starts from zero.
- `roll`: the last 24 hours, in 96 buckets of 15 minutes; buckets older than the window are dropped when read.

Admission (`admit`) reads every counter of the request, refuses if any budgeted counter would go over its limit
with the request's hold, and otherwise charges the hold to all of them and records the reservation — one atomic
step, so concurrent requests on any number of replicas can never together pass a limit. Settlement replaces the
hold with the real cost, in the period (or bucket) the hold went to, and forgets the reservation: settling twice
is a no-op. A request that was never settled (its client left mid-stream) keeps its hold charged. Requests of a
scope without any budget are only accounted (`account`), after the fact, without an admission round trip.

Time is Redis's own (`TIME`) on the Redis backend: every replica agrees on when a day or a month ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol

from gateway._redis import RedisEndpoint

__all__ = [
    "BUCKETS",
    "BUCKET_S",
    "BudgetBackend",
    "Counter",
    "CounterKind",
    "MemoryBudgets",
    "Reading",
    "RedisBudgets",
    "SpendSettlement",
    "period_tag",
]

CounterKind = Literal["day", "month", "roll"]
BUCKET_S = 900
BUCKETS = 96  # 96 x 15 min = the rolling 24 hours
_TTL_MS = {"day": 2 * 86_400_000, "month": 35 * 86_400_000, "roll": 25 * 3_600_000}


@dataclass(frozen=True, slots=True)
class Counter:
    """One scope's spend over one period; `limit` in nano-USD, 0 for a counter that only accounts."""

    scope: str
    kind: CounterKind
    limit: int = 0

    @property
    def state(self) -> str:
        return f"{self.scope}:{self.kind}"


class Reading(NamedTuple):
    """What the counters held at `now` (seconds since the epoch): used (holds included) and held, per counter."""

    allowed: bool
    now: float
    used: list[int]
    held: list[int]


class SpendSettlement(NamedTuple):
    counters: Sequence[Counter]
    reservation: str  # "" : no admission was made, account `actual` in the current periods
    actual: int


def _month(day: int) -> int:
    date = datetime.fromtimestamp(day * 86_400, UTC)
    return date.year * 12 + date.month - 1


def period_tag(kind: CounterKind, now: float) -> int:
    """Which period (day number, month number `year*12 + month-1`, 15-minute bucket) `now` falls in."""
    seconds = int(now)
    if kind == "roll":
        return seconds // BUCKET_S
    day = seconds // 86_400
    return day if kind == "day" else _month(day)


class BudgetBackend(Protocol):
    name: str

    async def admit(
        self, counters: Sequence[Counter], *, reservation: str, reserve: int, reserve_ms: int
    ) -> Reading: ...

    async def settle_many(self, settlements: Sequence[SpendSettlement]) -> None: ...

    async def read(self, counters: Sequence[Counter]) -> Reading: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...


class MemoryBudgets:
    """The Lua script below, over dicts, in one process."""

    name = "memory"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._fixed: dict[str, list[int]] = {}  # state -> [period, used, held]
        self._rolling: dict[str, dict[int, int]] = {}  # state -> bucket -> used
        self._rolling_held: dict[str, int] = {}
        self._reservations: dict[str, tuple[int, list[int], float]] = {}  # id -> (reserve, tags, expires at)

    def _used(self, counter: Counter, now: float) -> tuple[int, int]:
        state = counter.state
        if counter.kind == "roll":
            buckets = self._rolling.get(state, {})
            oldest = period_tag("roll", now) - BUCKETS
            for stale in [b for b in buckets if b <= oldest]:
                del buckets[stale]
            return sum(buckets.values()), self._rolling_held.get(state, 0)
        record = self._fixed.get(state)
        if record is None or record[0] != period_tag(counter.kind, now):
            return 0, 0
        return record[1], record[2]

    def _charge(self, counter: Counter, tag: int, amount: int, held: int, now: float) -> None:
        state = counter.state
        if counter.kind == "roll":
            if tag <= period_tag("roll", now) - BUCKETS:
                return
            buckets = self._rolling.setdefault(state, {})
            buckets[tag] = buckets.get(tag, 0) + amount
            self._rolling_held[state] = self._rolling_held.get(state, 0) + held
            return
        record = self._fixed.get(state)
        if record is None or record[0] != tag:
            if tag != period_tag(counter.kind, now):
                return  # a settlement for a period that has ended
            record = self._fixed[state] = [tag, 0, 0]
        record[1] += amount
        record[2] += held

    async def admit(self, counters: Sequence[Counter], *, reservation: str, reserve: int, reserve_ms: int) -> Reading:
        now = self._clock()
        readings = [self._used(c, now) for c in counters]
        allowed = all(
            c.limit <= 0 or used + reserve <= c.limit for c, (used, _) in zip(counters, readings, strict=True)
        )
        if allowed:
            tags = [period_tag(c.kind, now) for c in counters]
            for counter, tag in zip(counters, tags, strict=True):
                self._charge(counter, tag, reserve, reserve, now)
            self._reservations[reservation] = (reserve, tags, now + reserve_ms / 1000)
        return Reading(allowed, now, [u for u, _ in readings], [h for _, h in readings])

    async def settle_many(self, settlements: Sequence[SpendSettlement]) -> None:
        now = self._clock()
        for counters, reservation, actual in settlements:
            if not reservation:
                for counter in counters:
                    self._charge(counter, period_tag(counter.kind, now), actual, 0, now)
                continue
            record = self._reservations.pop(reservation, None)
            if record is None or record[2] <= now:
                continue
            reserve, tags, _ = record
            for counter, tag in zip(counters, tags, strict=True):
                self._charge(counter, tag, actual - reserve, -reserve, now)

    async def read(self, counters: Sequence[Counter]) -> Reading:
        now = self._clock()
        readings = [self._used(c, now) for c in counters]
        return Reading(True, now, [u for u, _ in readings], [h for _, h in readings])

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._fixed.clear()
        self._rolling.clear()
        self._reservations.clear()


LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local mode = ARGV[1]
local n = tonumber(ARGV[2])
local BW, NB = @BUCKET@, @BUCKETS@

local function month_of(day)
  -- the civil date of a day number (days since 1970-01-01), as year * 12 + month - 1
  local z = day + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y * 12 + m - 1
end
local function tag_of(kind)
  if kind == 'roll' then return math.floor(now / BW) end
  local day = math.floor(now / 86400)
  if kind == 'day' then return day end
  return month_of(day)
end
local function ttl_of(kind)
  if kind == 'day' then return @TTL_DAY@ elseif kind == 'month' then return @TTL_MONTH@ end
  return @TTL_ROLL@
end
local function fmt(x) return string.format('%d', x) end
local function used_of(key, kind)
  if kind == 'roll' then
    local oldest = tag_of('roll') - NB
    local all = redis.call('HGETALL', key)
    local used, held = 0, 0
    for j = 1, #all, 2 do
      local f = all[j]
      if f == 'held' then
        held = tonumber(all[j + 1])
      elseif tonumber(string.sub(f, 2)) <= oldest then
        redis.call('HDEL', key, f)
      else
        used = used + tonumber(all[j + 1])
      end
    end
    return used, held
  end
  local v = redis.call('HMGET', key, 'p', 'used', 'held')
  if tonumber(v[1]) ~= tag_of(kind) then return 0, 0 end
  return tonumber(v[2]) or 0, tonumber(v[3]) or 0
end
local function charge(key, kind, tag, amount, held)
  if kind == 'roll' then
    if tag <= tag_of('roll') - NB then return end
    redis.call('HINCRBY', key, 'b' .. fmt(tag), fmt(amount))
  else
    local p = tonumber(redis.call('HGET', key, 'p'))
    if p ~= tag then
      if tag ~= tag_of(kind) then return end
      redis.call('HSET', key, 'p', fmt(tag), 'used', '0', 'held', '0')
    end
    redis.call('HINCRBY', key, 'used', fmt(amount))
  end
  if held ~= 0 then redis.call('HINCRBY', key, 'held', fmt(held)) end
  redis.call('PEXPIRE', key, ttl_of(kind))
end

if mode == 'admit' then
  -- ARGV[3] reservation ttl ms, ARGV[4] the hold, then per counter: kind, limit (0: no limit)
  local reserve = tonumber(ARGV[4])
  local out = {1, tonumber(t[1]), tonumber(t[2])}
  for i = 1, n do
    local limit = tonumber(ARGV[4 + 2 * i])
    local used, held = used_of(KEYS[i], ARGV[3 + 2 * i])
    out[#out + 1] = used
    out[#out + 1] = held
    if limit > 0 and used + reserve > limit then out[1] = 0 end
  end
  if out[1] == 1 then
    local record = {'r', ARGV[4]}
    for i = 1, n do
      local kind = ARGV[3 + 2 * i]
      local tag = tag_of(kind)
      charge(KEYS[i], kind, tag, reserve, reserve)
      record[#record + 1] = 't' .. i
      record[#record + 1] = fmt(tag)
    end
    redis.call('HSET', KEYS[n + 1], unpack(record))
    redis.call('PEXPIRE', KEYS[n + 1], tonumber(ARGV[3]))
  end
  return out
end
if mode == 'settle' then
  -- ARGV[3] the real cost, then per counter: kind.  -1: settled already (or expired)
  local r = redis.call('HGETALL', KEYS[n + 1])
  if #r == 0 then return -1 end
  local rec = {}
  for j = 1, #r, 2 do rec[r[j]] = tonumber(r[j + 1]) end
  redis.call('DEL', KEYS[n + 1])
  local actual = tonumber(ARGV[3])
  for i = 1, n do
    charge(KEYS[i], ARGV[3 + i], rec['t' .. i], actual - rec['r'], -rec['r'])
  end
  return rec['r']
end
if mode == 'account' then
  for i = 1, n do
    local kind = ARGV[3 + i]
    charge(KEYS[i], kind, tag_of(kind), tonumber(ARGV[3]), 0)
  end
  return 0
end
local out = {1, tonumber(t[1]), tonumber(t[2])}
for i = 1, n do
  local used, held = used_of(KEYS[i], ARGV[2 + i])
  out[#out + 1] = used
  out[#out + 1] = held
end
return out
"""
for _name, _value in {
    "@BUCKETS@": BUCKETS,
    "@BUCKET@": BUCKET_S,
    "@TTL_DAY@": _TTL_MS["day"],
    "@TTL_MONTH@": _TTL_MS["month"],
    "@TTL_ROLL@": _TTL_MS["roll"],
}.items():
    LUA = LUA.replace(_name, str(_value))


def _reading(reply: Sequence[Any], n: int) -> Reading:
    values = [int(v) for v in reply]
    now = values[1] + values[2] / 1_000_000
    return Reading(values[0] == 1, now, values[3::2][:n], values[4::2][:n])


class RedisBudgets:
    """Every key in one hash slot (`{bud}`): a key's and its tenant's counters change in one script, which Redis
    Cluster allows only within a slot. Keep them on a Redis that does not evict."""

    name = "redis"

    def __init__(self, endpoint: RedisEndpoint, *, prefix: str = "ugw") -> None:
        self._endpoint = endpoint
        self._prefix = f"{prefix}:bud:{{bud}}:"
        self._script = endpoint.script(LUA)

    def _keys(self, counters: Sequence[Counter], reservation: str) -> list[str]:
        return [*(self._prefix + c.state for c in counters), f"{self._prefix}resv:{reservation}"]

    async def admit(self, counters: Sequence[Counter], *, reservation: str, reserve: int, reserve_ms: int) -> Reading:
        args: list[Any] = ["admit", len(counters), reserve_ms, reserve]
        for counter in counters:
            args += [counter.kind, counter.limit]
        keys = self._keys(counters, reservation)
        return _reading(await self._endpoint.eval(self._script, keys, args), len(counters))

    def _settle_args(self, settlement: SpendSettlement) -> tuple[list[str], list[Any]]:
        counters, reservation, actual = settlement
        mode = "settle" if reservation else "account"
        return self._keys(counters, reservation or "-"), [mode, len(counters), actual, *(c.kind for c in counters)]

    async def settle_many(self, settlements: Sequence[SpendSettlement]) -> None:
        await self._endpoint.eval_many([(self._script, *self._settle_args(s)) for s in settlements])

    async def read(self, counters: Sequence[Counter]) -> Reading:
        keys = self._keys(counters, "-")
        args = ["read", len(counters), *(c.kind for c in counters)]
        return _reading(await self._endpoint.eval(self._script, keys, args), len(counters))

    async def ping(self) -> bool:
        return await self._endpoint.ping()

    async def aclose(self) -> None:
        await self._endpoint.aclose()
