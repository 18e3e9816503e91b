"""The in-process cache backend: an LRU bounded by entry count and by bytes, with a TTL per entry.

Entries are the serialized bytes, so the byte bound is real. Expired entries are dropped when met and before
evicting live ones. An entry larger than the whole budget is not stored.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from gateway.cache.base import Write
from gateway.core.types import random_hex

__all__ = ["MemoryCache"]


class MemoryCache:
    name = "memory"
    shared = False

    def __init__(self, *, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._locks: dict[str, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @staticmethod
    def _cost(key: str, value: bytes) -> int:
        return len(key) + len(value)

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= self._cost(key, value)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def set(self, key: str, value: bytes, ttl_s: float, *, unlock: tuple[str, str] | None = None) -> None:
        self._store(key, value, ttl_s)
        if unlock is not None:
            await self.unlock(*unlock)

    async def set_many(self, writes: Sequence[Write]) -> None:
        for key, value, ttl_s, unlock in writes:
            await self.set(key, value, ttl_s, unlock=unlock)

    def _store(self, key: str, value: bytes, ttl_s: float) -> None:
        cost = self._cost(key, value)
        if key in self._entries:
            self._drop(key)
        if ttl_s <= 0 or cost > self.max_bytes:
            return
        now = self._clock()
        if len(self._entries) >= self.max_entries or self._bytes + cost > self.max_bytes:
            for stale in [k for k, (expires, _) in self._entries.items() if expires <= now]:
                self._drop(stale)
        while self._entries and (len(self._entries) >= self.max_entries or self._bytes + cost > self.max_bytes):
            self._drop(next(iter(self._entries)))  # least recently used first
        self._entries[key] = (now + ttl_s, value)
        self._bytes += cost

    async def get_or_lock(self, key: str, lock_key: str, ttl_s: float) -> tuple[bytes | None, str | None]:
        # One process: the cache's single-flight already serializes identical misses; this keeps the protocol.
        value = await self.get(key)
        if value is not None:
            return value, None
        now = self._clock()
        held = self._locks.get(lock_key)
        if held is not None and held[1] > now:
            return None, None
        token = random_hex(32)
        self._locks[lock_key] = (token, now + ttl_s)
        return None, token

    async def unlock(self, key: str, token: str) -> None:
        held = self._locks.get(key)
        if held is not None and held[0] == token:
            del self._locks[key]

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._entries.clear()
        self._locks.clear()
        self._bytes = 0
