"""The protocol both limiter backends implement (memory: one process; redis: shared by every replica)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from gateway.ratelimit.policy import Check, Outcome

__all__ = ["LimiterBackend", "Settlement"]


class Settlement(NamedTuple):
    checks: Sequence[Check]
    reservation: str
    actual: int


class LimiterBackend(Protocol):
    """Atomic admission over several limits, and settlement of reserved tokens.

    `admit` checks every limit and commits all of them or none; when admitted and `reserve_ms > 0` it also
    records `reserved` tokens under `reservation` for that long. `settle` moves the token limits by
    `actual - reserved` and forgets the reservation; settling twice (or after the record expired) is a no-op
    and returns None. Backends raise only gateway errors (a shared backend: ServiceUnavailable when down).
    """

    name: str

    async def admit(
        self, checks: Sequence[Check], *, reservation: str, reserved: int, reserve_ms: int
    ) -> list[Outcome]: ...

    async def settle(self, checks: Sequence[Check], *, reservation: str, actual: int) -> int | None: ...

    async def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """Several settlements at once (one round trip on Redis), each as `settle` would do it."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...
