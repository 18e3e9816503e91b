"""A hedge budget as a token bucket: hedges stay possible at any traffic, and bounded at every traffic.

Each request deposits `ratio` tokens, time deposits `min_per_s` tokens per second, the bucket holds at most
`burst`, and a hedge withdraws one. At 1 request a minute the time deposit keeps hedging available; at 10,000
requests a second hedges stay near `ratio` of traffic. (A share of all requests since start, as before, is
spent by one hedge at low traffic.) This is the shape of Finagle's retry budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    ratio: float
    min_per_s: float
    burst: float
    balance: float = field(init=False)
    _last: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.balance = self.burst

    def deposit(self, now: float) -> None:
        """One request's share, plus the time-based share since the last request."""
        elapsed = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        self.balance = min(self.burst, self.balance + self.ratio + elapsed * self.min_per_s)

    def withdraw(self) -> bool:
        if self.balance < 1.0:
            return False
        self.balance -= 1.0
        return True

    def refund(self) -> None:
        self.balance = min(self.burst, self.balance + 1.0)
