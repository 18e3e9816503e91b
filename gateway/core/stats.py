"""Live statistics and a circuit breaker per deployment, recorded from every call a strategy makes.

Strategies read them through `StatsView` (read-only); `StrategyContext` records into `LiveStats`. Per deployment:
EWMA latency and time to first token with their p95 over a window of recent calls, an EWMA success rate, recent
upstream 429s, the in-flight count, and a breaker: after `failure_threshold` consecutive failed tries (retries
included) it opens for `cooldown_s`, then lets one probe through (half-open); the probe's outcome closes or
reopens it. An upstream 429 cools the deployment down for its `retry-after`. While a deployment is open or
cooling down, `unavailable` says why and for how long, and strategies skip it without calling it.

A call abandoned after t ms (a hedged-out or losing racer, a client gone) is a censored sample: its latency was
at least t. When t is above the current estimate it is recorded as an observation of t, so one abandoned call
is enough to demote a deployment that turned slow; when it is below, it says nothing and is ignored.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["BreakerPolicy", "BreakerState", "DeploymentStats", "LiveStats", "StatsView", "Unavailable"]

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a deployment's breaker opens (consecutive failed tries) and how long it stays open."""

    failure_threshold: int = 3
    cooldown_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Why a deployment is skipped, and in how many seconds it may be tried again."""

    reason: Literal["breaker_open", "probe_in_flight", "rate_limited"]
    retry_after_s: float


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
    rate_limited: bool = False  # open because of an upstream 429 (a cool-down), not failures
    probing: bool = False
    changed_at: float = 0.0  # when the breaker last opened or closed (clock time), for sharing across processes

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
        return self._stats.unavailable(name) is None

    def recent_429s(self, name: str, within_s: float = 60.0) -> int:
        now = self._stats.clock()
        return sum(1 for t in self._stats.of(name).recent_429 if now - t <= within_s)


class LiveStats:
    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        policies: Mapping[str, BreakerPolicy] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        self.default_policy = BreakerPolicy(failure_threshold, cooldown_s)
        self.policies = dict(policies or {})
        self.clock = clock
        self.on_transition = on_transition
        self._by_name: dict[str, DeploymentStats] = {}
        self.view = StatsView(self)

    def policy(self, name: str) -> BreakerPolicy:
        return self.policies.get(name, self.default_policy)

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

    def unavailable(self, name: str) -> Unavailable | None:
        """Why `name` must not be called now, or None. Half-open lets exactly one probe through at a time."""
        stats = self._by_name.get(name)
        if stats is None or stats.open_until == 0.0:
            return None
        left = stats.open_until - self.clock()
        if left > 0:
            return Unavailable("rate_limited" if stats.rate_limited else "breaker_open", left)
        if stats.probing:
            return Unavailable("probe_in_flight", min(1.0, self.policy(name).cooldown_s))
        return None

    def started(self, name: str) -> None:
        stats = self.of(name)
        stats.in_flight += 1
        if self.breaker(name) == "half_open":
            stats.probing = True

    def failed_try(self, name: str, *, rate_limited_for: float | None = None) -> bool:
        """A failed try the retry layer wants to retry. It counts toward the breaker and the answer is True,
        unless this failure takes the deployment out of rotation (a 429, the threshold reached, or already
        out): then nothing is recorded here, since the call ends with this failure and its end records it, and
        the answer is False (do not retry)."""
        stats = self.of(name)
        last = rate_limited_for is not None or stats.consecutive_failures + 1 >= self.policy(name).failure_threshold
        if last or self.unavailable(name) is not None:
            return False
        stats.consecutive_failures += 1
        return True

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
        if cancelled:  # censored: at least this slow; it says nothing about health
            if ttft_ms is None:
                self._censored(stats, latency_ms)
            return
        stats.calls += 1
        stats.success = (1 - _ALPHA) * stats.success + _ALPHA * (1.0 if ok else 0.0)
        if ok:
            stats.consecutive_failures = 0
            if stats.open_until:
                stats.open_until = 0.0
                stats.rate_limited = False
                self._transition(name, "closed")
            stats.latencies.append(latency_ms)
            stats.latency_ms = _ewma(stats.latency_ms, latency_ms)
            if ttft_ms is not None:
                stats.ttfts.append(ttft_ms)
                stats.ttft_ms = _ewma(stats.ttft_ms, ttft_ms)
            return
        self._failure(stats, name, rate_limited_for)

    def _failure(self, stats: DeploymentStats, name: str, rate_limited_for: float | None) -> None:
        stats.consecutive_failures += 1
        now = self.clock()
        was_open = stats.open_until > now
        if rate_limited_for is not None:
            stats.recent_429.append(now)
            stats.open_until = max(stats.open_until, now + max(rate_limited_for, 1.0))
            stats.rate_limited = True
        elif stats.consecutive_failures >= self.policy(name).failure_threshold or stats.open_until:
            stats.open_until = now + self.policy(name).cooldown_s  # opens, or reopens after a failed probe
            stats.rate_limited = False
        else:
            return
        if not was_open:
            self._transition(name, "open")

    @staticmethod
    def _censored(stats: DeploymentStats, at_least_ms: float) -> None:
        """An abandoned call that had not produced its first token after `at_least_ms`."""
        if stats.ttft_ms is not None and at_least_ms > stats.ttft_ms:
            stats.ttfts.append(at_least_ms)
            stats.ttft_ms = _ewma(stats.ttft_ms, at_least_ms)
        if stats.latency_ms is not None and at_least_ms > stats.latency_ms:
            stats.latencies.append(at_least_ms)
            stats.latency_ms = _ewma(stats.latency_ms, at_least_ms)

    def _transition(self, name: str, state: BreakerState) -> None:
        self.of(name).changed_at = self.clock()
        if self.on_transition is not None:
            self.on_transition(name, state)

    def breakers(self) -> dict[str, tuple[float, bool, float]]:
        """Every breaker that has ever changed: name → (open until, opened by a 429, changed at), clock time."""
        return {name: (s.open_until, s.rate_limited, s.changed_at) for name, s in self._by_name.items() if s.changed_at}

    def adopt(self, name: str, open_until: float, rate_limited: bool, changed_at: float) -> None:
        """Another process's newer breaker state for `name` (clock time): open until then, or closed (0)."""
        stats = self.of(name)
        if changed_at <= stats.changed_at:
            return
        was_open = stats.open_until > self.clock()
        stats.open_until, stats.rate_limited, stats.changed_at = open_until, rate_limited, changed_at
        now_open = open_until > self.clock()
        if stats.open_until == 0.0:
            stats.consecutive_failures = 0
        if was_open != now_open and self.on_transition is not None:
            self.on_transition(name, "open" if now_open else "closed")


def _ewma(current: float | None, value: float) -> float:
    return value if current is None else (1 - _ALPHA) * current + _ALPHA * value
