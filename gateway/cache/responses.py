"""`ResponseCache`: exact-match caching of completed answers around the strategy call.

One request's view is a `Lookup`, entered before the strategy runs and left when the answer is out:

- `hit`: a stored `chat.completion` (a fresh copy per request).
- `miss`: the caller computes the answer and hands it to `fill`; followers of the same key get it too.
- `bypass`: the cache was not read (disabled, `Cache-Control: no-cache|no-store`, or the backend is down).

Stampede protection: concurrent identical misses in one process await one
leader (single-flight). On a shared backend the leader also takes a short lock (`SET NX PX`); a leader in another
process that finds the lock taken polls for the value (50 → 400 ms backoff) up to `lock_wait_s`, then computes
the answer itself (availability beats deduplication). When a leader fails or its answer is not cacheable, the
waiting followers call upstream themselves.

Only clean answers are stored: `object: chat.completion`, every choice finished with `stop`, `tool_calls` or
`function_call` (never `length`, `content_filter` or a missing finish_reason, which is what a cut stream leaves).
Stores run in the background, batched, and never delay the answer. Every backend failure is a miss or a skipped write
(fail-open): the cache is an optimisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

from gateway.cache.base import CacheBackend, Write
from gateway.cache.keys import CacheKey
from gateway.core.batch import Batcher
from gateway.core.errors import ServiceUnavailable

__all__ = ["CACHEABLE_FINISH_REASONS", "Lookup", "ResponseCache", "cacheable"]

log = logging.getLogger("ultra_gateway")

CacheStatus = Literal["hit", "miss", "bypass"]
CACHEABLE_FINISH_REASONS = frozenset({"stop", "tool_calls", "function_call"})
_RAW, _ZLIB = b"j", b"z"


def cacheable(body: Mapping[str, Any]) -> bool:
    """A complete, successful answer: worth replaying to the next identical request."""
    choices = body.get("choices")
    if body.get("object") != "chat.completion" or not isinstance(choices, list) or not choices:
        return False
    return all(isinstance(c, dict) and c.get("finish_reason") in CACHEABLE_FINISH_REASONS for c in choices)


STORE_BATCH_S = 0.005


class _Store(NamedTuple):
    key: CacheKey
    value: bytes
    ttl_s: float
    token: str | None
    leader: asyncio.Future[bytes | None] | None


@dataclass(slots=True)
class Lookup:
    """One request's view of the cache. `response` is set on a hit; call `fill` with the answer on a miss."""

    status: CacheStatus
    response: dict[str, Any] | None = None
    ttl_s: float = 0.0
    writable: bool = False
    _cache: ResponseCache | None = None
    _key: CacheKey | None = None
    _leader: asyncio.Future[bytes | None] | None = None
    _lock_token: str | None = None
    filled: bool = field(default=False)

    def fill(self, body: Mapping[str, Any]) -> bool:
        """Offer the finished answer; stored (in the background) only when cacheable. True if it will be."""
        if self.filled or not self.writable or self._cache is None or self._key is None:
            return False
        self.filled = True
        if not cacheable(body):
            return False
        value = self._cache.encode(body)
        if len(value) > self._cache.max_entry_bytes:
            return False
        if self._leader is not None and not self._leader.done():
            self._leader.set_result(value)  # followers in this process are answered now, not after the store
        token, self._lock_token = self._lock_token, None
        self._cache.store_soon(_Store(self._key, value, self.ttl_s, token, self._leader))
        return True


class ResponseCache:
    def __init__(
        self,
        backend: CacheBackend,
        *,
        ttl_s: float,
        max_ttl_s: float,
        prefix: str = "ugw",
        max_entry_bytes: int = 1024 * 1024,
        compress_over: int | None = 1024,
        lock_ttl_s: float = 30.0,
        lock_wait_s: float = 5.0,
    ) -> None:
        self.backend = backend
        self.ttl_s = ttl_s
        self.max_ttl_s = max_ttl_s
        self.prefix = prefix
        self.max_entry_bytes = max_entry_bytes
        self.compress_over = compress_over
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s
        self._inflight: dict[str, asyncio.Future[bytes | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stores: Batcher[_Store] = Batcher(self._store_many, delay_s=STORE_BATCH_S)

    # --- stored form ---------------------------------------------------------------------------------------

    def encode(self, body: Mapping[str, Any]) -> bytes:
        raw = orjson.dumps(body)
        if self.compress_over is not None and len(raw) > self.compress_over:
            return _ZLIB + zlib.compress(raw, 1)
        return _RAW + raw

    @staticmethod
    def decode(value: bytes) -> dict[str, Any] | None:
        try:
            raw = zlib.decompress(value[1:]) if value[:1] == _ZLIB else value[1:] if value[:1] == _RAW else None
            data = orjson.loads(raw) if raw is not None else None
        except (zlib.error, orjson.JSONDecodeError):
            data = None
        return data if isinstance(data, dict) else None  # an unreadable entry is a miss, never an error

    # --- background work -----------------------------------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def store_soon(self, store: _Store) -> None:
        """Stores run in the background, batched (gateway/core/batch.py): one round trip for those within
        `STORE_BATCH_S`. Until a value is readable, late arrivals here are answered by its leader's future."""
        self._stores.add(store)

    async def _store_many(self, stores: list[_Store]) -> None:
        writes = [
            Write(
                s.key.value_key(self.prefix),
                s.value,
                s.ttl_s,
                (s.key.lock_key(self.prefix), s.token) if s.token is not None else None,
            )
            for s in stores
        ]
        try:
            await self.backend.set_many(writes)
        except ServiceUnavailable:
            log.debug("cache write skipped: backend unavailable")  # the locks, if any, expire by themselves
        finally:
            for store in stores:
                self._forget(store.key.value_key(self.prefix), store.leader)

    def _forget(self, name: str, leader: asyncio.Future[bytes | None] | None) -> None:
        if leader is not None and self._inflight.get(name) is leader:
            del self._inflight[name]

    async def _unlock(self, key: CacheKey, token: str) -> None:
        with contextlib.suppress(ServiceUnavailable):  # else the lock expires by itself
            await self.backend.unlock(key.lock_key(self.prefix), token)

    @property
    def busy(self) -> bool:
        """Stores or unlocks queued or in flight."""
        return self._stores.busy or bool(self._tasks)

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Wait (bounded) for background stores; used at shutdown and by tests that read what was written."""
        await self._stores.drain(timeout_s)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)

    # --- lookups -------------------------------------------------------------------------------------------

    def effective_ttl(self, requested: float | None) -> float:
        ttl = self.ttl_s if requested is None else requested
        return max(0.0, min(ttl, self.max_ttl_s))

    async def _get(self, key: CacheKey) -> dict[str, Any] | None:
        value = await self.backend.get(key.value_key(self.prefix))
        return self.decode(value) if value is not None else None

    async def _await_leader(self, leader: asyncio.Future[bytes | None], wait_s: float) -> dict[str, Any] | None:
        try:
            value = await asyncio.wait_for(asyncio.shield(leader), timeout=max(wait_s, 0.0))
        except TimeoutError:
            return None
        return self.decode(value) if value is not None else None

    async def _poll(self, key: CacheKey, wait_s: float) -> dict[str, Any] | None:
        """Another process holds the lock: poll for its answer with backoff, up to `wait_s`."""
        deadline = time.monotonic() + wait_s
        delay = 0.05
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.4)
            found = await self._get(key)
            if found is not None:
                return found
        return None

    @asynccontextmanager
    async def lookup(
        self, key: CacheKey, *, read: bool = True, write: bool = True, ttl_s: float | None = None, wait_s: float
    ) -> AsyncIterator[Lookup]:
        """Enter before computing the answer, leave after `fill` (or after a failure). `wait_s` bounds how long
        this request may wait for another request's answer (its remaining time budget)."""
        ttl = self.effective_ttl(ttl_s)
        writable = write and ttl > 0
        if not read:
            yield Lookup("bypass", ttl_s=ttl, writable=writable, _cache=self, _key=key)
            return
        name = key.value_key(self.prefix)
        leader = self._inflight.get(name)
        if leader is not None:  # an identical request in this process is computing it: share its answer
            found = await self._await_leader(leader, wait_s)
            if found is not None:
                yield Lookup("hit", found)
            else:  # it failed, or its answer is not cacheable: go upstream without leading
                yield Lookup("miss", ttl_s=ttl, writable=writable, _cache=self, _key=key)
            return
        async with self._lead(key, name, ttl, writable, wait_s) as lookup:
            yield lookup

    @asynccontextmanager
    async def _lead(self, key: CacheKey, name: str, ttl: float, writable: bool, wait_s: float) -> AsyncIterator[Lookup]:
        """Read the backend as this process's leader for the key (registered before the read, so identical
        requests arriving meanwhile wait for it); on a shared backend the read also takes the replicas' lock."""
        leader: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._inflight[name] = leader
        lookup = Lookup("miss", ttl_s=ttl, writable=writable, _cache=self, _key=key, _leader=leader)
        try:
            try:
                if self.backend.shared:
                    value, lookup._lock_token = await self.backend.get_or_lock(
                        name, key.lock_key(self.prefix), self.lock_ttl_s
                    )
                else:
                    value = await self.backend.get(name)
            except ServiceUnavailable:
                yield Lookup("bypass")  # backend down: neither read nor write (fail-open)
                return
            if value is not None:
                found = self.decode(value)  # an unreadable entry is a miss: computed again and overwritten
            elif self.backend.shared and lookup._lock_token is None:
                found = await self._poll(key, min(self.lock_wait_s, wait_s))  # another replica is computing it
                value = self.encode(found) if found is not None else None
            else:
                found = None
            if found is not None:
                leader.set_result(value)  # followers here get it too
                yield Lookup("hit", found)
                return
            yield lookup
        finally:
            if not lookup.filled or not leader.done() or leader.result() is None:
                self._forget(name, leader)  # else the store forgets it once the value is readable
            if not leader.done():
                leader.set_result(None)  # no answer to share: followers go upstream themselves
            if lookup._lock_token is not None:  # not handed to a store (which releases it with the write)
                token, lookup._lock_token = lookup._lock_token, None
                self.spawn(self._unlock(key, token))

    async def ping(self) -> bool:
        return await self.backend.ping()

    async def aclose(self) -> None:
        await self.drain()
        await self.backend.aclose()
