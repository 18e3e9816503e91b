"""Direct routing: one `provider/model` and its configured fallbacks, tried in order.

Each deployment's own retries happen inside its provider; this walks the chain when a deployment finally fails,
as the context's fallback policy says (`strategies/_fallback.py`: a request the upstream rejected as invalid is
not tried elsewhere). Streams fall over only while opening, before the
first chunk has been received (and so before anything reached the client).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from gateway.core.errors import AllProvidersFailed, UpstreamError
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.types import ChatRequest, Chunk
from strategies._accept import Accept
from strategies.base import RecordedStream, Role, StrategyContext, StrategyMeta, StrategyResult

__all__ = ["ChainStream", "Direct", "open_first", "run_chain"]


async def run_chain(
    chain: Sequence[Deployment],
    request: ChatRequest,
    ctx: StrategyContext,
    *,
    role: Role = "attempt",
    accept: Accept | None = None,
) -> StrategyResult:
    """Call each deployment in turn until one answers (and its answer is accepted)."""
    errors: list[UpstreamError] = []
    for deployment in chain:
        try:
            response = await ctx.call(deployment, request, role)
        except UpstreamError as exc:
            if not ctx.fallback.falls_over(exc):
                raise
            errors.append(exc)
            continue
        reason = accept(response) if accept is not None else None
        if reason is not None:
            ctx.meta.attempts[-1].status = "rejected"
            ctx.meta.attempts[-1].note = reason
            errors.append(UpstreamError(f"answer rejected: {reason}", deployment=deployment.name))
            continue
        ctx.meta.served_by.append(deployment)
        return StrategyResult(response, ctx.meta)
    raise AllProvidersFailed(errors)


@asynccontextmanager
async def open_first(
    chain: Sequence[Deployment], request: ChatRequest, ctx: StrategyContext, *, role: Role = "attempt"
) -> AsyncIterator[RecordedStream]:
    """Open a stream on the first deployment of the chain that gets as far as its first chunk."""
    errors: list[UpstreamError] = []
    async with AsyncExitStack() as stack:
        for deployment in chain:
            try:
                opened = await stack.enter_async_context(ctx.open_stream(deployment, request, role))
            except UpstreamError as exc:
                if not ctx.fallback.falls_over(exc):
                    raise
                errors.append(exc)
                continue
            ctx.meta.served_by.append(deployment)
            yield opened
            return
        raise AllProvidersFailed(errors)


class ChainStream:
    """A StrategyStream over one opened provider stream (or any chunks) and the request's metadata."""

    def __init__(self, opened: AsyncIterable[Chunk], meta: StrategyMeta) -> None:
        self._opened = opened
        self.meta = meta

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._opened.__aiter__()


class Direct:
    """The strategy behind a `provider/model` (or bare model id) request."""

    def __init__(self, chain: Sequence[Deployment]) -> None:
        self.chain = list(chain)
        self.name = "direct"

    @classmethod
    def for_model(cls, pool: ProviderPool, model: str) -> Direct:
        return cls(pool.chain(pool.resolve(model)))

    async def complete(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> StrategyResult:
        return await run_chain(self.chain, request, ctx)

    @asynccontextmanager
    async def stream(
        self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext
    ) -> AsyncIterator[ChainStream]:
        async with open_first(self.chain, request, ctx) as opened:
            yield ChainStream(opened, ctx.meta)
