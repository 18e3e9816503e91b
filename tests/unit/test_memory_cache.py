"""The memory backend's bounds: LRU by entries and by bytes, TTL."""

from __future__ import annotations

from gateway.cache.memory import MemoryCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_lru_by_entries_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(max_entries=2, max_bytes=1 << 20)
    await cache.set("a", b"1", 60)
    await cache.set("b", b"2", 60)
    assert await cache.get("a") == b"1"  # a is now the most recent
    await cache.set("c", b"3", 60)
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1"
    assert await cache.get("c") == b"3"
    assert len(cache) == 2


async def test_bounded_by_bytes() -> None:
    cache = MemoryCache(max_entries=100, max_bytes=1000)
    for i in range(10):
        await cache.set(f"k{i}", bytes(300), 60)
        assert cache.size_bytes <= 1000
    assert len(cache) == 3
    assert await cache.get("k9") is not None
    await cache.set("huge", bytes(2000), 60)  # larger than the whole budget: not stored, nothing evicted
    assert await cache.get("huge") is None
    assert len(cache) == 3


async def test_ttl_and_expired_entries_go_first() -> None:
    clock = Clock()
    cache = MemoryCache(max_entries=2, max_bytes=1 << 20, clock=clock)
    await cache.set("short", b"s", 1)
    await cache.set("long", b"l", 100)
    clock.now += 2
    assert await cache.get("short") is None
    await cache.set("short2", b"s", 1)
    clock.now += 2
    await cache.set("new", b"n", 100)  # the expired entry makes room, not the live LRU one
    assert await cache.get("long") == b"l"
    assert await cache.get("new") == b"n"
    assert cache.size_bytes == len("long") + 1 + len("new") + 1


async def test_overwrite_keeps_byte_accounting_exact() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=1 << 20)
    await cache.set("a", bytes(100), 60)
    await cache.set("a", bytes(10), 60)
    assert cache.size_bytes == 11
    await cache.set("a", bytes(10), 0)  # ttl 0: removed, not stored
    assert cache.size_bytes == 0
