"""The protocol both cache backends implement: bytes in, bytes out, with TTLs, plus a short lock for
stampede protection across replicas."""

from __future__ import annotations

from typing import Protocol

__all__ = ["CacheBackend"]


class CacheBackend(Protocol):
    """A shared backend raises only gateway errors (ServiceUnavailable when down); the cache fails open."""

    name: str
    shared: bool
    """True when other processes see the same entries (then the cross-replica lock matters)."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def lock(self, key: str, ttl_s: float) -> str | None:
        """Take the lock: a token to release it with, or None when someone else holds it."""
        ...

    async def unlock(self, key: str, token: str) -> None:
        """Release the lock only if `token` still holds it (compare-and-delete)."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...
