"""Live statistics and a circuit breaker per deployment, recorded from every call a strategy makes.

Strategies read them through `StatsView` (read-only); `StrategyContext` records into `LiveStats`. Per deployment:
EWMA latency and time to first token with their p95 over a window of recent calls, an EWMA success rate, recent
upstream 429s, the in-flight count, and a breaker: after `failure_threshold` consecutive failures it opens for
`cooldown_s`, then lets one probe through (half-open); the probe's outcome closes or reopens it. An upstream
429 cools the deployment down for its `retry-after`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["BreakerState", "DeploymentStats", "LiveStats", "StatsView"]

BreakerState = Literal["closed", "open", "half_open"]
_ALPHA = 0.2  # EWMA weight of the newest observation
_WINDOW = 64  # calls kept for percentiles


def _p95(values: deque[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


@dataclass(slots=True)
class DeploymentStats:
    latency_ms: float | None = None
    ttft_ms: float | None = None
    success: float = 1.0
    calls: int = 0
    in_flight: int = 0
    consecutive_failures: int = 0
    recent_429: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    ttfts: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    open_until: float = 0.0
    probing: bool = False

    @property
    def p95_latency_ms(self) -> float | None:
        return _p95(self.latencies)

    @property
    def p95_ttft_ms(self) -> float | None:
        return _p95(self.ttfts)


class StatsView:
    """What strategies may read. Unknown deployments look healthy and have no timings yet."""

    def __init__(self, stats: LiveStats) -> None:
        self._stats = stats

    def get(self, name: str) -> DeploymentStats:
        return self._stats.of(name)

    def breaker(self, name: str) -> BreakerState:
        return self._stats.breaker(name)

    def available(self, name: str) -> bool:
        """False while the breaker is open or a half-open probe is already under way."""
        state = self._stats.breaker(name)
        return state == "closed" or (state == "half_open" and not self._stats.of(name).probing)

    def recent_429s(self, name: str, within_s: float = 60.0) -> int:
        now = self._stats.clock()
        return sum(1 for t in self._stats.of(name).recent_429 if now - t <= within_s)


class LiveStats:
    def __init__(
        self, *, failure_threshold: int = 3, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._by_name: dict[str, DeploymentStats] = {}
        self.view = StatsView(self)

    def of(self, name: str) -> DeploymentStats:
        stats = self._by_name.get(name)
        if stats is None:
            stats = self._by_name[name] = DeploymentStats()
        return stats

    def breaker(self, name: str) -> BreakerState:
        stats = self.of(name)
        if stats.open_until == 0.0:
            return "closed"
        return "open" if self.clock() < stats.open_until else "half_open"

    def started(self, name: str) -> None:
        stats = self.of(name)
        stats.in_flight += 1
        if self.breaker(name) == "half_open":
            stats.probing = True

    def finished(
        self,
        name: str,
        *,
        ok: bool,
        latency_ms: float,
        ttft_ms: float | None = None,
        rate_limited_for: float | None = None,
        cancelled: bool = False,
    ) -> None:
        stats = self.of(name)
        stats.in_flight = max(0, stats.in_flight - 1)
        stats.probing = False
        if cancelled:  # says nothing about the deployment's health
            return
        stats.calls += 1
        stats.success = (1 - _ALPHA) * stats.success + _ALPHA * (1.0 if ok else 0.0)
        if ok:
            stats.consecutive_failures = 0
            stats.open_until = 0.0
            stats.latencies.append(latency_ms)
            stats.latency_ms = (
                latency_ms if stats.latency_ms is None else (1 - _ALPHA) * stats.latency_ms + _ALPHA * latency_ms
            )
            if ttft_ms is not None:
                stats.ttfts.append(ttft_ms)
                stats.ttft_ms = ttft_ms if stats.ttft_ms is None else (1 - _ALPHA) * stats.ttft_ms + _ALPHA * ttft_ms
            return
        stats.consecutive_failures += 1
        now = self.clock()
        if rate_limited_for is not None:
            stats.recent_429.append(now)
            stats.open_until = max(stats.open_until, now + max(rate_limited_for, 1.0))
        elif stats.consecutive_failures >= self.failure_threshold or stats.open_until:
            stats.open_until = now + self.cooldown_s  # opens, or reopens after a failed probe
