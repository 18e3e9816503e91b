"""Typed outcomes → response headers: the only place that knows the gateway's own header names.

`x-ultra-*` describe how the answer was made (strategy, deployments, cache, cost); `x-ratelimit-*` where the
caller's limits stand, as OpenAI sends them (Go-style durations for the resets); `retry-after` and
`retry-after-ms` tell a refused client when to come back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from gateway.core.errors import (
    BudgetExceeded,
    BudgetState,
    GatewayError,
    LimitState,
    MethodNotAllowed,
    RateLimited,
    format_duration,
)
from strategies.base import StrategyMeta

__all__ = ["answer_headers", "budget_headers", "encode", "error_headers", "limit_headers"]


def limit_headers(limits: Mapping[str, LimitState]) -> dict[str, str]:
    out: dict[str, str] = {}
    for dimension, state in limits.items():
        out[f"x-ratelimit-limit-{dimension}"] = str(state.limit)
        out[f"x-ratelimit-remaining-{dimension}"] = str(state.remaining)
        out[f"x-ratelimit-reset-{dimension}"] = format_duration(state.reset_s)
    return out


def budget_headers(budget: BudgetState) -> dict[str, str]:
    """The binding budget (the key's or its tenant's, whichever has less left): USD allowed and left in the
    period, after this request's worst-case hold, and the time until the period ends (none for a rolling one)."""
    out = {
        "x-ratelimit-limit-budget-usd": f"{budget.limit_usd:g}",
        "x-ratelimit-remaining-budget-usd": f"{budget.remaining_usd:.6f}",
        "x-ultra-budget-scope": f"{budget.scope};period={budget.period}",
    }
    if budget.reset_s is not None:
        out["x-ratelimit-reset-budget"] = format_duration(budget.reset_s)
    return out


def answer_headers(
    meta: StrategyMeta, cache: str, limits: Mapping[str, LimitState], budget: BudgetState | None = None
) -> dict[str, str]:
    headers = {
        "x-ultra-strategy": meta.chosen_strategy or meta.strategy,
        "x-ultra-providers": ",".join(meta.providers),
        "x-ultra-cache": cache,
        "x-ultra-cost-usd": f"{meta.cost_usd:.8f}",
    }
    if limits:
        headers.update(limit_headers(limits))
    if budget is not None:
        headers.update(budget_headers(budget))
    return headers


def error_headers(error: GatewayError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers.update(limit_headers(error.limits))
    if isinstance(error, BudgetExceeded):
        headers.update(budget_headers(error.budget))
    if isinstance(error, MethodNotAllowed):
        headers["allow"] = ", ".join(error.allowed)
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))
        headers["retry-after-ms"] = str(math.ceil(error.retry_after * 1000 - 1e-9))
    return headers


def encode(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
