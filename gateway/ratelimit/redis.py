"""The Redis limiter backend: one Lua script, one round trip per check, exact across any number of gateway
replicas sharing the Redis.

The script mirrors `_gcra.py` line by line, in integer microseconds on Redis's own clock (`TIME`: one clock for
every replica). Mode `admit` probes every limit and commits all or none, plus the token reservation record;
mode `settle` moves the token limits by `actual - reserved` and deletes the record in the same step, so a second
settlement finds nothing and changes nothing.

Every key sits in one hash slot (`{rl}` tag): a request's key, model and global limits are committed in one
script, which Redis Cluster allows only within a slot. Limiter state is a few bytes per key.
Keep limits on a Redis that does not evict (`noeviction`), or cache pressure can silently reset them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway._redis import RedisEndpoint
from gateway.ratelimit.base import Settlement
from gateway.ratelimit.policy import Check, Outcome

__all__ = ["LUA", "RedisLimiter"]

LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[2])
if ARGV[1] == 'admit' then
  -- ARGV[3] reservation ttl ms (0: none)  ARGV[4] reserved tokens  then per limit: ei, tolerance, cost
  local out = {1}
  local tats = {}
  for i = 1, n do
    local base = 5 + (i - 1) * 3
    local ei = tonumber(ARGV[base])
    local tau = tonumber(ARGV[base + 1])
    local cost = tonumber(ARGV[base + 2])
    local tat = tonumber(redis.call('GET', KEYS[i])) or now
    if tat < now then tat = now end
    local new_tat = tat + ei * cost
    if new_tat - tau <= now then
      tats[i] = new_tat
      out[#out + 1] = 1
      out[#out + 1] = math.floor((now - (new_tat - tau)) / ei)
      out[#out + 1] = new_tat - now
      out[#out + 1] = 0
    else
      out[1] = 0
      local remaining = math.floor((now - (tat - tau)) / ei)
      if remaining < 0 then remaining = 0 end
      out[#out + 1] = 0
      out[#out + 1] = remaining
      out[#out + 1] = tat - now
      out[#out + 1] = new_tat - tau - now
    end
  end
  if out[1] == 1 then
    for i = 1, n do
      redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000))
    end
    local ttl = tonumber(ARGV[3])
    if ttl > 0 then redis.call('SET', KEYS[n + 1], ARGV[4], 'PX', ttl) end
  end
  return out
end
-- settle: ARGV[3] actual tokens, then per limit: ei.  Returns the reserved amount, or -1 if already settled.
local reserved = tonumber(redis.call('GET', KEYS[n + 1]))
if not reserved then return -1 end
redis.call('DEL', KEYS[n + 1])
local delta = tonumber(ARGV[3]) - reserved
for i = 1, n do
  local ei = tonumber(ARGV[3 + i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new_tat = tat + ei * delta
  if new_tat > now then
    redis.call('SET', KEYS[i], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
  else
    redis.call('DEL', KEYS[i])
  end
end
return reserved
"""


class RedisLimiter:
    name = "redis"

    def __init__(self, endpoint: RedisEndpoint, *, prefix: str = "ugw") -> None:
        self._endpoint = endpoint
        self._prefix = f"{prefix}:rl:{{rl}}:"
        self._script = endpoint.script(LUA)

    def key(self, state: str) -> str:
        return self._prefix + state

    def _keys(self, checks: Sequence[Check], reservation: str) -> list[str]:
        return [*(self._prefix + c.state for c in checks), f"{self._prefix}resv:{reservation}"]

    async def admit(
        self, checks: Sequence[Check], *, reservation: str, reserved: int, reserve_ms: int
    ) -> list[Outcome]:
        args: list[Any] = ["admit", len(checks), reserve_ms, reserved]
        for check in checks:
            args += [check.rate.ei, check.rate.tolerance, check.cost]
        keys = self._keys(checks, reservation)
        values = [int(v) for v in await self._endpoint.eval(self._script, keys, args)]
        return [
            Outcome(check, values[1 + 4 * i] == 1, *values[2 + 4 * i : 5 + 4 * i]) for i, check in enumerate(checks)
        ]

    def _settle_args(self, checks: Sequence[Check], reservation: str, actual: int) -> tuple[list[str], list[Any]]:
        return self._keys(checks, reservation), ["settle", len(checks), actual, *(c.rate.ei for c in checks)]

    async def settle(self, checks: Sequence[Check], *, reservation: str, actual: int) -> int | None:
        keys, args = self._settle_args(checks, reservation, actual)
        reserved = int(await self._endpoint.eval(self._script, keys, args))
        return None if reserved < 0 else reserved

    async def settle_many(self, settlements: Sequence[Settlement]) -> None:
        calls = [(self._script, *self._settle_args(c, reservation, actual)) for c, reservation, actual in settlements]
        await self._endpoint.eval_many(calls)

    async def ping(self) -> bool:
        return await self._endpoint.ping()

    async def aclose(self) -> None:
        await self._endpoint.aclose()
