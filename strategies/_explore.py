"""Exploration for the speed-ranked race (`ultra-parallel`): without it, a deployment is measured only when it
wins, so a deployment ranked on the unknown-latency prior is either never tried (a measured one beats the prior)
or tried forever (it keeps losing, is cancelled, and a cancelled call records no latency).

Two remedies, both local to the strategy:

- a loser is not "unknown" any more: a call cancelled after t ms is known to take longer than t, so its rank key
  is at least the longest such t seen (the prior's optimism decays as evidence arrives);
- a small budgeted share of requests (`share`) adds one more racer: the eligible deployment tried least so far,
  outside the racers the ranking already chose. It costs one extra call on those requests only.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from gateway.core.pool import Deployment
from gateway.core.stats import StatsView
from strategies._ranking import UNKNOWN_TTFT_MS, healthy_first
from strategies.base import Attempt

__all__ = ["Explorer"]


class Explorer:
    def __init__(self, share: float) -> None:
        self.share = share
        self.requests = 0
        self.explored = 0
        self.floor_ms: dict[str, float] = {}  # deployment -> longest time it was seen not to answer within
        self.tried: dict[str, int] = {}

    def observe(self, attempts: Iterable[Attempt]) -> None:
        for attempt in attempts:
            name = attempt.deployment.name
            self.tried[name] = self.tried.get(name, 0) + 1
            if attempt.status == "cancelled":
                self.floor_ms[name] = max(self.floor_ms.get(name, 0.0), attempt.latency_ms)

    def key(self, d: Deployment, stats: StatsView) -> float:
        s = stats.get(d.name)
        ttft = s.ttft_ms if s.ttft_ms is not None else max(UNKNOWN_TTFT_MS, self.floor_ms.get(d.name, 0.0))
        return ttft / max(s.success, 0.05)

    def rank(self, deployments: Iterable[Deployment], stats: StatsView) -> list[Deployment]:
        return healthy_first(sorted(deployments, key=lambda d: self.key(d, stats)), stats)

    def pick(self, ranked: Sequence[Deployment], width: int, stats: StatsView, rng: random.Random) -> Deployment | None:
        """The deployment to add to this race, if this request is in the exploration budget."""
        self.requests += 1
        if self.explored + 1 > self.share * self.requests:  # the budget is earned first: every 1/share requests
            return None
        outside = [d for d in ranked[width:] if stats.available(d.name)]
        if not outside:
            return None
        least = min(self.tried.get(d.name, 0) for d in outside)
        choice = rng.choice([d for d in outside if self.tried.get(d.name, 0) == least])
        self.explored += 1
        return choice
