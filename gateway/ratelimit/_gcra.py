"""GCRA (generic cell rate algorithm) arithmetic, in integer microseconds, shared by the memory backend and
mirrored line by line in the Redis Lua script (redis.py), so both backends give the same answers.

State per limit is one number, the theoretical arrival time (TAT). Emission interval `ei = ceil(period/limit)`
(whole microseconds keep every quantity an exact integer in both Python and Lua doubles; rounding up never
admits more than `limit` per period), tolerance `tau = ei * burst`. A request of cost `c` at `now`:
`tat = max(TAT, now)`, `new_tat = tat + c*ei`, allowed iff `new_tat - tau <= now`. A TAT at or before `now` is
the same as no state, so stored state expires at its TAT. (GCRA as described at brandur.org/rate-limiting.)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Probe", "Rate", "adjust", "probe"]


@dataclass(frozen=True, slots=True)
class Rate:
    """`limit` units per `period_us`, up to `burst` at once (default: the whole limit)."""

    limit: int
    period_us: int
    burst: int

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period_us < 1 or self.burst < 1:
            raise ValueError("limit, period and burst must be positive")

    @property
    def ei(self) -> int:
        return -(-self.period_us // self.limit)

    @property
    def tolerance(self) -> int:
        return self.ei * self.burst


@dataclass(frozen=True, slots=True)
class Probe:
    """The verdict for one limit: whether `cost` fits now, the TAT to store if it does, and what the headers say.

    `remaining` is what is left after this request if it is admitted (before it, if not); `reset_us` is the time
    until the limit is back to its full burst; `retry_us` (0 when allowed) is how long until `cost` would fit.
    """

    allowed: bool
    new_tat: int
    remaining: int
    reset_us: int
    retry_us: int


def probe(tat: int | None, now: int, rate: Rate, cost: int) -> Probe:
    """Check one limit; nothing is stored here (the caller commits every limit or none)."""
    ei, tau = rate.ei, rate.tolerance
    current = now if tat is None or tat < now else tat
    new_tat = current + ei * cost
    if new_tat - tau <= now:
        return Probe(True, new_tat, (now - (new_tat - tau)) // ei, new_tat - now, 0)
    remaining = max(0, (now - (current - tau)) // ei)
    return Probe(False, current, remaining, current - now, new_tat - tau - now)


def adjust(tat: int | None, now: int, rate: Rate, delta: int) -> int | None:
    """Move a TAT by `delta` units (negative: a refund). None means "no state" (the limit is full again)."""
    current = now if tat is None or tat < now else tat
    new_tat = current + rate.ei * delta
    return new_tat if new_tat > now else None
