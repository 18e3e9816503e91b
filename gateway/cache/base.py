"""The protocol both cache backends implement: bytes in, bytes out, with TTLs, plus a short lock for
stampede protection across replicas. A leader's read and lock are one step, and so are its store and unlock:
on Redis, one round trip each (the cost of a round trip through redis-py is most of the cache's CPU)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

__all__ = ["CacheBackend", "Write"]


class Write(NamedTuple):
    key: str
    value: bytes
    ttl_s: float
    unlock: tuple[str, str] | None = None


class CacheBackend(Protocol):
    """A shared backend raises only gateway errors (ServiceUnavailable when down); the cache fails open."""

    name: str
    shared: bool
    """True when other processes see the same entries (then the cross-replica lock matters)."""

    async def get(self, key: str) -> bytes | None: ...

    async def get_or_lock(self, key: str, lock_key: str, ttl_s: float) -> tuple[bytes | None, str | None]:
        """In one step: the value, or else the lock. `(value, None)` on a hit; `(None, token)` when this caller
        took the lock (release it with the token); `(None, None)` when someone else holds it."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float, *, unlock: tuple[str, str] | None = None) -> None:
        """Store (a `ttl_s` <= 0 stores nothing) and, with `unlock=(lock_key, token)`, release that lock in the
        same step."""
        ...

    async def set_many(self, writes: Sequence[Write]) -> None:
        """Several `set`s at once (one round trip on Redis)."""
        ...

    async def unlock(self, key: str, token: str) -> None:
        """Release the lock only if `token` still holds it (compare-and-delete)."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...
