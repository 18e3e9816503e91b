"""The responses `/v1/responses` keeps, so `GET /v1/responses/{id}` can return one and `previous_response_id`
can continue its conversation: per API key (a key sees only what it stored), each for a TTL. A response created
with `store: false` is never put here.

Two backends behind one protocol:

- `MemoryResponseStore`: in process, bounded by count and by bytes (the oldest goes first).
- `RedisResponseStore`: when the cache backend is Redis, so every worker and replica sees every stored response;
  one key per response (`{prefix}:resp:{owner digest}:{id}`) with the TTL as its expiry. Redis errors surface as
  `RedisUnavailable` (503); the route answers without storing when a write fails.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway._redis import RedisEndpoint

__all__ = ["MemoryResponseStore", "RedisResponseStore", "ResponseStore", "StoredResponse"]

DEFAULT_TTL_S = 3600.0
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: dict[str, Any]
    conversation: list[dict[str, Any]]  # chat messages, this response's output last, instructions left out

    def to_bytes(self) -> bytes:
        return orjson.dumps({"response": self.response, "conversation": self.conversation})

    @classmethod
    def from_bytes(cls, raw: bytes) -> StoredResponse:
        data = orjson.loads(raw)
        return cls(data["response"], data["conversation"])


class ResponseStore(Protocol):
    name: str

    async def put(self, owner: str, response_id: str, stored: StoredResponse) -> None: ...

    async def get(self, owner: str, response_id: str) -> StoredResponse | None: ...

    async def delete(self, owner: str, response_id: str) -> bool: ...

    async def aclose(self) -> None: ...


class MemoryResponseStore:
    name = "memory"

    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        # Entries are kept serialized: the byte bound is then real, and a caller cannot mutate what is stored.
        self._entries: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop_first(self) -> None:
        _, (_, raw) = self._entries.popitem(last=False)
        self._bytes -= len(raw)

    def _pop(self, key: tuple[str, str]) -> bytes | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._bytes -= len(entry[1])
        return entry[1]

    async def put(self, owner: str, response_id: str, stored: StoredResponse) -> None:
        raw = stored.to_bytes()
        if len(raw) > self.max_bytes:
            return  # larger than the whole budget: not kept
        now = self._clock()
        self._pop((owner, response_id))
        self._entries[(owner, response_id)] = (now + self.ttl_s, raw)
        self._bytes += len(raw)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop_first()
        while self._entries:  # insertion order is expiry order (one TTL): drop the expired from the front
            if next(iter(self._entries.values()))[0] > now:
                break
            self._drop_first()

    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        entry = self._entries.get((owner, response_id))
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._pop((owner, response_id))
            return None
        return StoredResponse.from_bytes(entry[1])

    async def delete(self, owner: str, response_id: str) -> bool:
        if await self.get(owner, response_id) is None:
            return False
        return self._pop((owner, response_id)) is not None

    async def aclose(self) -> None:
        self._entries.clear()
        self._bytes = 0


class RedisResponseStore:
    """The endpoint is made on first use, inside the event loop that serves requests."""

    name = "redis"

    def __init__(
        self, endpoint: Callable[[], RedisEndpoint], *, prefix: str = "ugw", ttl_s: float = DEFAULT_TTL_S
    ) -> None:
        self._make = endpoint
        self._endpoint: RedisEndpoint | None = None
        self._prefix = prefix
        self.ttl_s = ttl_s

    @property
    def endpoint(self) -> RedisEndpoint:
        if self._endpoint is None:
            self._endpoint = self._make()
        return self._endpoint

    def _key(self, owner: str, response_id: str) -> str:
        digest = hashlib.sha256(owner.encode()).hexdigest()[:24]  # key names are free of whatever a name holds
        return f"{self._prefix}:resp:{digest}:{response_id}"

    async def put(self, owner: str, response_id: str, stored: StoredResponse) -> None:
        key, raw, ttl = self._key(owner, response_id), stored.to_bytes(), max(int(self.ttl_s), 1)
        await self.endpoint.call(lambda client: client.set(key, raw, ex=ttl))

    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        key = self._key(owner, response_id)
        raw = await self.endpoint.call(lambda client: client.get(key))
        if raw is None:
            return None
        return StoredResponse.from_bytes(raw if isinstance(raw, bytes) else raw.encode())

    async def delete(self, owner: str, response_id: str) -> bool:
        key = self._key(owner, response_id)
        removed = await self.endpoint.call(lambda client: client.delete(key))
        return bool(removed)

    async def aclose(self) -> None:
        if self._endpoint is not None:
            await self._endpoint.aclose()
            self._endpoint = None
