"""Scorers that order deployments from configured priors and live stats. All return a new list, best
first; deployments whose breaker is open (or that sit at their max_concurrency) go last, so strategies route
around them but still have somewhere to go when everything is unhealthy."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gateway.core.pool import Deployment
from gateway.core.provider import Capabilities
from gateway.core.stats import StatsView
from gateway.core.types import ChatRequest

__all__ = ["by_cost", "by_quality", "by_speed", "eligible", "healthy_first", "weighted"]

UNKNOWN_TTFT_MS = 250.0  # prior for a deployment with no timings yet: explored, not preferred or shunned


def eligible(deployments: Iterable[Deployment], request: ChatRequest) -> list[Deployment]:
    """Deployments whose capabilities can serve this request (tools, n, streaming)."""
    body = request.body
    out = []
    for d in deployments:
        caps: Capabilities = d.provider.capabilities
        if request.has_tools and not caps.tools:
            continue
        if (body.get("n") or 1) > 1 and not caps.n:
            continue
        if request.stream and not caps.streaming:
            continue
        out.append(d)
    return out


def _usable(d: Deployment, stats: StatsView) -> bool:
    at_limit = d.max_concurrency is not None and stats.get(d.name).in_flight >= d.max_concurrency
    return stats.available(d.name) and not at_limit


def healthy_first(ranked: list[Deployment], stats: StatsView) -> list[Deployment]:
    return [d for d in ranked if _usable(d, stats)] + [d for d in ranked if not _usable(d, stats)]


def _sorted(
    deployments: Iterable[Deployment], key: Callable[[Deployment], float], stats: StatsView
) -> list[Deployment]:
    return healthy_first(sorted(deployments, key=key), stats)


def ttft_ms(d: Deployment, stats: StatsView) -> float:
    value = stats.get(d.name).ttft_ms
    return UNKNOWN_TTFT_MS if value is None else value


def by_quality(deployments: Iterable[Deployment], stats: StatsView) -> list[Deployment]:
    return _sorted(deployments, lambda d: (-d.quality, d.blended_price), stats)  # type: ignore[arg-type,return-value]


def by_cost(deployments: Iterable[Deployment], stats: StatsView) -> list[Deployment]:
    return _sorted(deployments, lambda d: (d.blended_price, -d.quality), stats)  # type: ignore[arg-type,return-value]


def by_speed(deployments: Iterable[Deployment], stats: StatsView) -> list[Deployment]:
    return _sorted(deployments, lambda d: ttft_ms(d, stats) / max(stats.get(d.name).success, 0.05), stats)


def weighted(
    deployments: Iterable[Deployment], stats: StatsView, *, quality: float, cost: float, latency: float
) -> list[Deployment]:
    """score = w_q·quality - w_c·cost - w_l·latency, cost and latency normalised to 0-1 over the candidates."""
    pool = list(deployments)
    if not pool:
        return []
    max_price = max(d.blended_price for d in pool) or 1.0
    max_latency = max(ttft_ms(d, stats) for d in pool) or 1.0

    def score(d: Deployment) -> float:
        success = stats.get(d.name).success
        return (
            quality * d.quality * success
            - cost * d.blended_price / max_price
            - latency * ttft_ms(d, stats) / max_latency
        )

    return _sorted(pool, lambda d: -score(d), stats)
