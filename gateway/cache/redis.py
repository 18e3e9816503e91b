"""The Redis cache backend: `GET`, and the stampede lock (`SET NX PX` + compare-and-delete)
folded into the leader's two steps, one Lua round trip each: read-or-lock
before the answer, store-and-unlock after it. Value and lock share a hash tag, so both scripts are
Cluster-safe. Errors come out as RedisUnavailable (a ServiceUnavailable) from the endpoint; the cache above
treats them as a miss.

Keep the cache on a Redis with `maxmemory` and an LRU policy, and the limiter on one that does not evict
eviction is per instance and would reset limits too.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway._redis import RedisEndpoint, ScriptCall
from gateway.cache.base import Write
from gateway.core.types import random_hex

__all__ = ["RedisCache"]


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value  # str only if built with decode_responses


_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: value, lock. ARGV: token, lock ttl ms. Returns the value, else 1 (lock taken) or 0 (held elsewhere).
_GET_OR_LOCK = """
local value = redis.call('GET', KEYS[1])
if value then return value end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# KEYS: value. ARGV: value, ttl ms. (A script, so that every write can share a batch's pipeline of EVALSHAs.)
_SET = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS: value, lock. ARGV: value, ttl ms, token.
_SET_AND_UNLOCK = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""


class RedisCache:
    name = "redis"
    shared = True

    def __init__(self, endpoint: RedisEndpoint) -> None:
        self._endpoint = endpoint
        register = endpoint.script
        self._unlock, self._get_or_lock, self._set, self._set_and_unlock = (
            register(_UNLOCK),
            register(_GET_OR_LOCK),
            register(_SET),
            register(_SET_AND_UNLOCK),
        )

    async def get(self, key: str) -> bytes | None:
        return _bytes(await self._endpoint.get(key))

    async def get_or_lock(self, key: str, lock_key: str, ttl_s: float) -> tuple[bytes | None, str | None]:
        token = random_hex(32)
        args: list[str | int] = [token, max(1, int(ttl_s * 1000))]
        reply = await self._endpoint.eval(self._get_or_lock, [key, lock_key], args)
        if isinstance(reply, int):
            return None, token if reply == 1 else None
        return _bytes(reply), None

    async def set(self, key: str, value: bytes, ttl_s: float, *, unlock: tuple[str, str] | None = None) -> None:
        await self.set_many([Write(key, value, ttl_s, unlock)])

    async def set_many(self, writes: Sequence[Write]) -> None:
        await self._endpoint.eval_many([call for write in writes if (call := self._script_for(write))])

    def _script_for(self, write: Write) -> ScriptCall | None:
        key, value, ttl_s, unlock = write
        ttl_ms = int(ttl_s * 1000)
        if ttl_ms <= 0:  # nothing to store, but a lock is still released
            return (self._unlock, [unlock[0]], [unlock[1]]) if unlock is not None else None
        if unlock is not None:
            return self._set_and_unlock, [key, unlock[0]], [value, ttl_ms, unlock[1]]
        return self._set, [key], [value, ttl_ms]

    async def unlock(self, key: str, token: str) -> None:
        await self._endpoint.eval(self._unlock, [key], [token])

    async def ping(self) -> bool:
        return await self._endpoint.ping()

    async def aclose(self) -> None:
        await self._endpoint.aclose()
