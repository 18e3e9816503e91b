"""`ultra-simple` (and `ultra-quality`'s engine): Mixture-of-Agents. Candidates answer in parallel (bounded),
the lead analyses them (agreement, contradictions, likely errors), then the lead synthesises one final answer
from every candidate answer plus the analysis. One surviving candidate is returned as is; a failing lead hands
over to the next lead, else the best candidate is returned. With `layers > 1`, each further layer of proposers
answers again seeing the previous layer's answers. Requests with tools skip synthesis (a synthesised text
cannot stand in for tool calls): the best candidate answers. When every candidate gives the same final answer
(`_agreement.py`), analysis and synthesis are skipped and the best candidate's answer is served
(`agreement: true` in the metadata)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated

from pydantic import Field

from gateway.core.errors import UpstreamError
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.types import ChatRequest, ChatResponse
from strategies._agreement import agreed
from strategies._common import Kind, Options, ReplayStream, allowed, candidates_of
from strategies._fanout import gather_all
from strategies._ranking import by_quality
from strategies._synthesis import analysis_request, layer_request, synthesis_request
from strategies.base import Strategy, StrategyContext, StrategyResult, StrategyStream
from strategies.direct import ChainStream, open_first

__all__ = ["KIND", "Simple", "SimpleOptions"]


class SimpleOptions(Options):
    candidates: list[str] | None = Field(None, description="Proposers (default: the 3 best by quality).")
    lead: str | None = Field(None, description="Analyses and synthesises (default: the best by quality).")
    analysis: bool = Field(True, description="Run the analysis step before synthesis.")
    layers: Annotated[int, Field(ge=1, le=4)] = Field(1, description="Mixture-of-Agents proposer layers.")
    max_parallel: Annotated[int, Field(ge=1, le=32)] = 8
    self_samples: Annotated[int, Field(ge=0, le=8)] = Field(0, description="Self-MoA: k samples of one model.")
    skip_on_agreement: bool = Field(True, description="Serve the best candidate when all give the same answer.")


class Simple:
    def __init__(self, name: str, options: SimpleOptions, *, default_k: int = 3) -> None:
        self.name = name
        self.options = options
        self.default_k = default_k

    def _plan(
        self, pool: ProviderPool, request: ChatRequest, ctx: StrategyContext
    ) -> tuple[list[Deployment], list[Deployment]]:
        ranked = by_quality(candidates_of(pool, None, request), ctx.stats)
        if self.options.self_samples:
            proposers = [ranked[0]] * self.options.self_samples
        elif self.options.candidates:
            proposers = candidates_of(pool, self.options.candidates, request)
        else:
            proposers = ranked[: self.default_k]
        leads = allowed(pool, [self.options.lead]) if self.options.lead else []
        leads += [d for d in ranked if d not in leads]
        return proposers, leads

    async def _propose(
        self, proposers: Sequence[Deployment], request: ChatRequest, ctx: StrategyContext
    ) -> list[tuple[Deployment, ChatResponse]]:
        answers = await gather_all(ctx, proposers, request, role="candidate", limit=self.options.max_parallel)
        for _ in range(self.options.layers - 1):
            layered = layer_request(request, [a for _, a in answers])
            answers = await gather_all(ctx, proposers, layered, role="proposer", limit=self.options.max_parallel)
        return answers

    async def _analysis(
        self, leads: Sequence[Deployment], request: ChatRequest, answers: list[ChatResponse], ctx: StrategyContext
    ) -> str | None:
        if not self.options.analysis:
            return None
        for lead in leads[:2]:
            try:
                return (await ctx.call(lead, analysis_request(request, answers), "analysis")).content
            except UpstreamError as exc:
                if not ctx.fallback.falls_over(exc):
                    raise
                continue
        return None  # synthesis still runs, without an analysis

    async def _gathered(
        self, pool: ProviderPool, request: ChatRequest, ctx: StrategyContext
    ) -> tuple[list[tuple[Deployment, ChatResponse]], list[Deployment], str | None]:
        proposers, leads = self._plan(pool, request, ctx)
        answers = await self._propose(proposers, request, ctx)
        if len(answers) == 1 or request.has_tools:
            return answers, leads, None
        if self.options.skip_on_agreement and agreed([a for _, a in answers]):
            ctx.meta.extra["agreement"] = True
            return [self._best(answers)], leads, None
        return answers, leads, await self._analysis(leads, request, [a for _, a in answers], ctx)

    @staticmethod
    def _best(answers: list[tuple[Deployment, ChatResponse]]) -> tuple[Deployment, ChatResponse]:
        return max(answers, key=lambda pair: pair[0].quality)

    async def complete(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> StrategyResult:
        answers, leads, analysis = await self._gathered(pool, request, ctx)
        if len(answers) > 1 and not request.has_tools:
            synthesis = synthesis_request(request, [a for _, a in answers], analysis)
            for lead in leads:
                try:
                    response = await ctx.call(lead, synthesis, "synthesis")
                except UpstreamError as exc:
                    if not ctx.fallback.falls_over(exc):
                        raise
                    continue
                ctx.meta.served_by.extend([*(d for d, _ in answers), lead])
                return StrategyResult(response, ctx.meta)
        deployment, response = self._best(answers)
        ctx.meta.served_by.append(deployment)
        return StrategyResult(response, ctx.meta)

    @asynccontextmanager
    async def stream(
        self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext
    ) -> AsyncIterator[StrategyStream]:
        answers, leads, analysis = await self._gathered(pool, request, ctx)
        async with AsyncExitStack() as stack:
            opened = None
            if len(answers) > 1 and not request.has_tools:
                synthesis = synthesis_request(request, [a for _, a in answers], analysis)
                synthesis = ChatRequest(synthesis.body | {"stream": True}, synthesis.model, True, False)
                try:
                    opened = await stack.enter_async_context(open_first(leads, synthesis, ctx, role="synthesis"))
                except UpstreamError as exc:
                    if not ctx.fallback.falls_over(exc):
                        raise
                    opened = None  # every lead failed to start: the best candidate answers
            if opened is not None:
                ctx.meta.served_by[:0] = [d for d, _ in answers]
                yield ChainStream(opened, ctx.meta)
                return
            deployment, response = self._best(answers)
            ctx.meta.served_by.append(deployment)
            yield ReplayStream(response, ctx.meta)


def _build(alias: str, options: SimpleOptions, arms: Mapping[str, Strategy]) -> Strategy:
    return Simple(alias, options)


KIND = Kind(SimpleOptions, _build)
