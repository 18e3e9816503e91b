"""The racing strategies: `ultra-parallel` (best-ranked providers race, adaptive width), `ultra-balanced`
(weighted score, top two race, then down the ranking) and `ultra-speed` (fastest by live TTFT, hedged after
its p95). They differ only in how they rank and how wide they start, so they share one engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated

from pydantic import Field

from gateway.core.pool import Deployment, ProviderPool
from gateway.core.types import ChatRequest
from strategies._accept import rejection
from strategies._budget import TokenBucket
from strategies._common import Kind, Options, candidates_of
from strategies._explore import Explorer
from strategies._fanout import race, race_stream
from strategies._ranking import by_speed, weighted
from strategies.base import Strategy, StrategyContext, StrategyResult, StrategyStream
from strategies.direct import ChainStream

__all__ = [
    "BALANCED",
    "PARALLEL",
    "SPEED",
    "Balanced",
    "BalancedOptions",
    "Parallel",
    "ParallelOptions",
    "Speed",
    "SpeedOptions",
    "Weights",
]


class _Race:
    name: str
    candidates: list[str] | None

    def rank(self, pool: ProviderPool, request: ChatRequest, ctx: StrategyContext) -> list[Deployment]:
        raise NotImplementedError

    def width(self) -> int:
        return 1

    def hedge_after_s(self, ranked: list[Deployment], ctx: StrategyContext) -> float | None:
        return None

    def learn(self, hedged: bool, failed: bool, budgeted: bool) -> None:
        """After the race: whether a hedge fired, whether any call failed, and whether a hedge was budgeted."""
        return None

    def _learn(self, ctx: StrategyContext, budgeted: bool, failed: bool) -> None:
        failed = failed or any(a.status in ("error", "rejected") for a in ctx.meta.attempts)
        self.learn(bool(ctx.meta.extra.get("hedged")), failed, budgeted)

    async def complete(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> StrategyResult:
        ranked = self.rank(pool, request, ctx)
        hedge_after_s = self.hedge_after_s(ranked, ctx)
        try:
            _, response = await race(
                ctx, ranked, request, width=self.width(), accept=rejection, hedge_after_s=hedge_after_s
            )
        except BaseException:
            self._learn(ctx, hedge_after_s is not None, True)
            raise
        self._learn(ctx, hedge_after_s is not None, False)
        return StrategyResult(response, ctx.meta)

    @asynccontextmanager
    async def stream(
        self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext
    ) -> AsyncIterator[StrategyStream]:
        ranked = self.rank(pool, request, ctx)
        hedge_after_s = self.hedge_after_s(ranked, ctx)
        async with AsyncExitStack() as stack:
            try:
                opening = race_stream(ctx, ranked, request, width=self.width(), hedge_after_s=hedge_after_s)
                opened = await stack.enter_async_context(opening)
            except BaseException:
                self._learn(ctx, hedge_after_s is not None, True)
                raise
            self._learn(ctx, hedge_after_s is not None, False)
            yield ChainStream(opened, ctx.meta)


class ParallelOptions(Options):
    candidates: list[str] | None = Field(None, description="Racers (default: every deployment).")
    min_width: Annotated[int, Field(ge=1, le=8)] = 1
    max_width: Annotated[int, Field(ge=1, le=8)] = 3
    initial_width: Annotated[float, Field(ge=1, le=8)] = 2
    explore_share: float = Field(0.05, ge=0, le=1, description="Share of requests that race one more deployment.")


class Parallel(_Race):
    """AIMD on the race width: a request that saw a failure widens the next race by one (additive increase,
    up to max_width); a clean request narrows it by 10 % (multiplicative decrease, down to min_width). So a
    healthy fleet costs about one call per request, and a flaky one gets redundancy. Ranked by speed with
    deliberate exploration (`_explore.py`)."""

    def __init__(self, name: str, options: ParallelOptions) -> None:
        self.name = name
        self.options = options
        self.candidates = options.candidates
        self.current_width = float(options.initial_width)
        self.explorer = Explorer(options.explore_share)
        self._extra = 0  # set by rank() for the width() call that follows it synchronously (same request)

    def rank(self, pool: ProviderPool, request: ChatRequest, ctx: StrategyContext) -> list[Deployment]:
        ranked = self.explorer.rank(candidates_of(pool, self.candidates, request), ctx.stats)
        width = self._width()
        extra = self.explorer.pick(ranked, width, ctx.stats, ctx.rng)
        self._extra = 0
        if extra is not None:
            ranked.remove(extra)
            ranked.insert(width, extra)
            self._extra = 1
            ctx.meta.extra["explored"] = extra.name
        return ranked

    def _width(self) -> int:
        return max(self.options.min_width, min(self.options.max_width, round(self.current_width)))

    def width(self) -> int:
        extra, self._extra = self._extra, 0
        return self._width() + extra

    async def complete(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> StrategyResult:
        try:
            return await super().complete(request, pool, ctx)
        finally:
            self.explorer.observe(ctx.meta.attempts)

    @asynccontextmanager
    async def stream(
        self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext
    ) -> AsyncIterator[StrategyStream]:
        try:
            async with super().stream(request, pool, ctx) as inner:
                yield inner
        finally:
            self.explorer.observe(ctx.meta.attempts)

    def learn(self, hedged: bool, failed: bool, budgeted: bool) -> None:
        if failed:
            self.current_width = min(self.options.max_width, self.current_width + 1)
        else:
            self.current_width = max(self.options.min_width, self.current_width * 0.9)


class Weights(Options):
    quality: float = 1.0
    cost: float = 0.3
    latency: float = 0.3


class BalancedOptions(Options):
    candidates: list[str] | None = None
    weights: Weights = Field(default_factory=Weights)
    width: Annotated[int, Field(ge=1, le=8)] = 2


class Balanced(_Race):
    def __init__(self, name: str, options: BalancedOptions) -> None:
        self.name = name
        self.options = options
        self.candidates = options.candidates

    def rank(self, pool: ProviderPool, request: ChatRequest, ctx: StrategyContext) -> list[Deployment]:
        w = self.options.weights
        return weighted(
            candidates_of(pool, self.candidates, request), ctx.stats, quality=w.quality, cost=w.cost, latency=w.latency
        )

    def width(self) -> int:
        return self.options.width


class SpeedOptions(Options):
    candidates: list[str] | None = None
    hedge_after_ms: float | None = Field(None, ge=1, description="Fixed hedge delay (default: p95 TTFT).")
    default_hedge_ms: float = Field(500.0, ge=1, description="Hedge delay before any p95 is known.")
    max_hedge_share: float = Field(0.2, ge=0, le=1, description="Hedges earned per request (the budget's ratio).")
    min_hedges_per_s: float = Field(
        0.1, ge=0, description="Hedges earned per second whatever the traffic, so low traffic can still hedge."
    )
    hedge_burst: float = Field(10.0, ge=1, description="Most hedges the budget holds at once.")


class Speed(_Race):
    def __init__(self, name: str, options: SpeedOptions) -> None:
        self.name = name
        self.options = options
        self.candidates = options.candidates
        self.budget = TokenBucket(options.max_hedge_share, options.min_hedges_per_s, options.hedge_burst)

    def rank(self, pool: ProviderPool, request: ChatRequest, ctx: StrategyContext) -> list[Deployment]:
        return by_speed(candidates_of(pool, self.candidates, request), ctx.stats)

    def hedge_after_s(self, ranked: list[Deployment], ctx: StrategyContext) -> float | None:
        self.budget.deposit(ctx.clock())
        if len(ranked) < 2 or not self.budget.withdraw():
            return None  # no second deployment, or the hedge budget is spent
        # withdrawn now; a request that needs no hedge gives it back in learn()
        p95 = ctx.stats.get(ranked[0].name).p95_ttft_ms
        delay = self.options.hedge_after_ms or p95 or self.options.default_hedge_ms
        return delay / 1000

    def learn(self, hedged: bool, failed: bool, budgeted: bool) -> None:
        if budgeted and not hedged:
            self.budget.refund()  # budgeted but not needed


def _parallel(alias: str, options: ParallelOptions, arms: Mapping[str, Strategy]) -> Strategy:
    return Parallel(alias, options)


def _balanced(alias: str, options: BalancedOptions, arms: Mapping[str, Strategy]) -> Strategy:
    return Balanced(alias, options)


def _speed(alias: str, options: SpeedOptions, arms: Mapping[str, Strategy]) -> Strategy:
    return Speed(alias, options)


PARALLEL = Kind(ParallelOptions, _parallel)
BALANCED = Kind(BalancedOptions, _balanced)
SPEED = Kind(SpeedOptions, _speed)
