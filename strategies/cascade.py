"""The chain strategies: `ultra-waterfall` (a configured chain in order; on error, timeout, empty or refused
answer go to the next) and `ultra-cost` (FrugalGPT: cheapest first, escalate until an answer passes the
acceptance check and, optionally, a judge model's score)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from pydantic import Field

from gateway.core.errors import AllProvidersFailed, UpstreamError
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.types import ChatRequest, ChatResponse
from strategies._accept import rejection
from strategies._common import Kind, Options, ReplayStream, allowed, candidates_of
from strategies._fanout import Prefixed, has_content, until_content
from strategies._judge import judge_score
from strategies._ranking import by_cost, by_quality
from strategies.base import Strategy, StrategyContext, StrategyResult, StrategyStream
from strategies.direct import ChainStream, run_chain

__all__ = ["COST", "WATERFALL", "Cost", "CostOptions", "Waterfall", "WaterfallOptions"]


class WaterfallOptions(Options):
    chain: list[str] | None = Field(None, description="Deployments in order (default: by quality, best first).")


class Waterfall:
    def __init__(self, name: str, options: WaterfallOptions) -> None:
        self.name = name
        self.options = options

    def _chain(self, pool: ProviderPool, request: ChatRequest, ctx: StrategyContext) -> list[Deployment]:
        if self.options.chain:
            return candidates_of(pool, self.options.chain, request)
        return by_quality(candidates_of(pool, None, request), ctx.stats)

    async def complete(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> StrategyResult:
        return await run_chain(self._chain(pool, request, ctx), request, ctx, accept=rejection)

    @asynccontextmanager
    async def stream(
        self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext
    ) -> AsyncIterator[StrategyStream]:
        """Falls over until the first byte reaches the client: errors while opening, and a stream that ends
        without any content (the role chunk is held back until content or a tool call arrives)."""
        errors: list[UpstreamError] = []
        for deployment in self._chain(pool, request, ctx):
            attempt = AsyncExitStack()
            try:
                opened = await attempt.enter_async_context(ctx.open_stream(deployment, request))
                chunks = opened.__aiter__()
                held = [chunk async for chunk in until_content(chunks)]
            except UpstreamError as exc:
                await attempt.aclose()
                if not ctx.fallback.falls_over(exc):
                    raise
                errors.append(exc)
                continue
            if not has_content(held[-1] if held else {}):
                await attempt.aclose()
                opened.attempt.status, opened.attempt.note = "rejected", "empty answer"
                errors.append(UpstreamError("answer rejected: empty answer", deployment=deployment.name))
                continue
            ctx.meta.served_by.append(deployment)
            async with attempt:
                yield ChainStream(Prefixed(held, chunks), ctx.meta)
            return
        raise AllProvidersFailed(errors)


AUTO_JUDGE = "auto"


class CostOptions(Options):
    chain: list[str] | None = Field(None, description="Deployments cheapest first (default: every one by price).")
    judge: str | None = Field(
        AUTO_JUDGE,
        description="A deployment that scores each answer 0-10; `auto` (default): the best by quality prior whose "
        "price is at most `judge_max_price_share` of the dearest candidate's; null: no judge.",
    )
    threshold: float = Field(7.0, ge=0, le=10, description="Lowest judge score accepted.")
    judge_max_price_share: float = Field(0.25, gt=0, le=1, description="Price cap of the `auto` judge.")


def auto_judge(candidates: list[Deployment], max_share: float) -> Deployment | None:
    """The best deployment by quality prior among those priced at most `max_share` of the dearest candidate (a
    verdict is a short answer to a long prompt: a strong but not top-priced model is the usual sweet spot)."""
    if len(candidates) < 2:
        return None
    ceiling = max(d.blended_price for d in candidates) * max_share
    affordable = [d for d in candidates if d.blended_price <= ceiling]
    return max(affordable, key=lambda d: (d.quality, -d.blended_price)) if affordable else None


class Cost:
    def __init__(self, name: str, options: CostOptions) -> None:
        self.name = name
        self.options = options

    def _judge(self, pool: ProviderPool, chain: list[Deployment]) -> Deployment | None:
        if self.options.judge is None:
            return None
        if self.options.judge == AUTO_JUDGE:
            return auto_judge(chain, self.options.judge_max_price_share)
        judges = allowed(pool, [self.options.judge])
        return judges[0] if judges else None  # a judge outside this key's models: the acceptance check decides

    async def _judged(
        self, answer: ChatResponse, request: ChatRequest, judge: Deployment | None, ctx: StrategyContext
    ) -> str | None:
        reason = rejection(answer)
        if reason is not None or judge is None:
            return reason
        try:
            score = await judge_score(ctx, judge, request, answer)
        except UpstreamError as exc:
            if not ctx.fallback.falls_over(exc):
                raise
            return None  # no judge available: the acceptance check alone decides
        if score is None:
            return None  # a verdict without a score is no verdict: the acceptance check alone decides
        return None if score >= self.options.threshold else f"judge score {score:g} < {self.options.threshold:g}"

    async def complete(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> StrategyResult:
        chain = (
            candidates_of(pool, self.options.chain, request)
            if self.options.chain
            else by_cost(candidates_of(pool, None, request), ctx.stats)
        )
        judge = self._judge(pool, chain)
        errors: list[UpstreamError] = []
        for step, deployment in enumerate(chain):
            try:
                answer = await ctx.call(deployment, request, "attempt")
            except UpstreamError as exc:
                if not ctx.fallback.falls_over(exc):
                    raise
                errors.append(exc)
                continue
            last = step == len(chain) - 1
            # The last answer is served whatever a judge says: asking it would cost and change nothing.
            reason = rejection(answer) if last else await self._judged(answer, request, judge, ctx)
            if reason is None:
                ctx.meta.served_by.append(deployment)
                ctx.meta.extra["escalations"] = step
                return StrategyResult(answer, ctx.meta)
            attempt = next(a for a in reversed(ctx.meta.attempts) if a.deployment is deployment and a.role == "attempt")
            attempt.status, attempt.note = "rejected", f"escalated: {reason}"
            errors.append(UpstreamError(f"answer rejected: {reason}", deployment=deployment.name))
        raise AllProvidersFailed(errors)

    @asynccontextmanager
    async def stream(
        self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext
    ) -> AsyncIterator[StrategyStream]:
        # The acceptance check needs the whole answer, so the cascade runs to its end and the accepted answer
        # is replayed as a stream.
        result = await self.complete(request, pool, ctx)
        yield ReplayStream(result.response, ctx.meta)


def _waterfall(alias: str, options: WaterfallOptions, arms: Mapping[str, Strategy]) -> Strategy:
    return Waterfall(alias, options)


def _cost(alias: str, options: CostOptions, arms: Mapping[str, Strategy]) -> Strategy:
    return Cost(alias, options)


WATERFALL = Kind(WaterfallOptions, _waterfall)
COST = Kind(CostOptions, _cost)
