"""The Redis cache backend: `SET key value PX ttl` in one command, `GET`, and the stampede lock
(`SET NX PX` + compare-and-delete in Lua, reference/redis-patterns.md §3.4). Errors come out as
RedisUnavailable (a ServiceUnavailable) from the endpoint; the cache above treats them as a miss.

Keep the cache on a Redis with `maxmemory` and an LRU policy, and the limiter on one that does not evict
(reference §3.2): eviction is per instance and would reset limits too.
"""

from __future__ import annotations

from gateway._redis import RedisEndpoint
from gateway.core.types import random_hex

__all__ = ["RedisCache"]

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCache:
    name = "redis"
    shared = True

    def __init__(self, endpoint: RedisEndpoint) -> None:
        self._endpoint = endpoint
        self._unlock = endpoint.client.register_script(_UNLOCK)

    async def get(self, key: str) -> bytes | None:
        value = await self._endpoint.call(lambda client: client.get(key))
        if isinstance(value, str):  # only if the endpoint was built with decode_responses
            return value.encode()
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        ttl_ms = int(ttl_s * 1000)
        if ttl_ms <= 0:
            return
        await self._endpoint.call(lambda client: client.set(key, value, px=ttl_ms))

    async def lock(self, key: str, ttl_s: float) -> str | None:
        token = random_hex(32)
        ttl_ms = max(1, int(ttl_s * 1000))
        taken = await self._endpoint.call(lambda client: client.set(key, token, nx=True, px=ttl_ms))
        return token if taken else None

    async def unlock(self, key: str, token: str) -> None:
        await self._endpoint.call(lambda client: self._unlock(keys=[key], args=[token], client=client))

    async def ping(self) -> bool:
        return await self._endpoint.ping()

    async def aclose(self) -> None:
        await self._endpoint.aclose()
