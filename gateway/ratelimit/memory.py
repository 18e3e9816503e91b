"""The in-process limiter backend: the GCRA arithmetic of `_gcra.py` over a dict, same semantics as the Redis
script in one process. Also the local fallback when Redis is down and limits fail open.

Memory stays bounded by the traffic of one period: a state whose TAT has passed equals no state and is swept,
as are expired reservations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from gateway.ratelimit._gcra import adjust, probe
from gateway.ratelimit.base import Settlement
from gateway.ratelimit.policy import Check, Outcome

__all__ = ["MemoryLimiter"]


def _now_us() -> int:
    return time.monotonic_ns() // 1000


class MemoryLimiter:
    name = "memory"

    def __init__(self, *, clock_us: Callable[[], int] = _now_us, sweep_every: int = 4096) -> None:
        self._clock = clock_us
        self._tats: dict[str, int] = {}
        self._reservations: dict[str, tuple[int, int]] = {}  # id -> (reserved tokens, expires at µs)
        self._sweep_every = sweep_every
        self._ops = 0

    def _sweep(self, now: int) -> None:
        self._ops += 1
        if self._ops % self._sweep_every:
            return
        self._tats = {k: v for k, v in self._tats.items() if v > now}
        self._reservations = {k: v for k, v in self._reservations.items() if v[1] > now}

    def tat(self, state: str) -> int | None:
        """The stored TAT (tests and introspection); None when the limit is full."""
        value = self._tats.get(state)
        return value if value is not None and value > self._clock() else None

    async def admit(
        self, checks: Sequence[Check], *, reservation: str, reserved: int, reserve_ms: int
    ) -> list[Outcome]:
        now = self._clock()
        self._sweep(now)
        probes = [probe(self._tats.get(c.state), now, c.rate, c.cost) for c in checks]
        if all(p.allowed for p in probes):
            for check, verdict in zip(checks, probes, strict=True):
                self._tats[check.state] = verdict.new_tat
            if reserve_ms > 0:
                self._reservations[reservation] = (reserved, now + reserve_ms * 1000)
        return [Outcome(c, p.allowed, p.remaining, p.reset_us, p.retry_us) for c, p in zip(checks, probes, strict=True)]

    async def settle(self, checks: Sequence[Check], *, reservation: str, actual: int) -> int | None:
        now = self._clock()
        record = self._reservations.pop(reservation, None)
        if record is None or record[1] <= now:
            return None
        reserved = record[0]
        for check in checks:
            new_tat = adjust(self._tats.get(check.state), now, check.rate, actual - reserved)
            if new_tat is None:
                self._tats.pop(check.state, None)
            else:
                self._tats[check.state] = new_tat
        return reserved

    async def settle_many(self, settlements: Sequence[Settlement]) -> None:
        for checks, reservation, actual in settlements:
            await self.settle(checks, reservation=reservation, actual=actual)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._tats.clear()
        self._reservations.clear()
