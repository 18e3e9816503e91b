"""The request pipeline, framework-free: route the model name → run the strategy → shape what the client gets.

Seams for later stages (SPEC §6-9): admission (rate limits) before the strategy, cache lookup/store around it,
token settlement after it, and telemetry hooks on every attempt. The HTTP edge (gateway/http) parses and
renders; everything between is here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import ModelNotFound, UpstreamTimeout
from gateway.core.pool import ProviderPool
from gateway.core.stream import ToolCallDeltaNormalizer, usage_chunk
from gateway.core.types import ChatRequest, Chunk
from gateway.registry import build_pool
from gateway.settings import BUILTIN_ALIASES, Settings
from strategies.base import Strategy, StrategyContext, StrategyMeta
from strategies.direct import Direct

__all__ = ["Gateway", "Outcome", "RequestContext", "StreamOutcome"]

log = logging.getLogger("ultra_gateway")

# One process-wide RNG for strategies: seeding a fresh random.Random() reads 2.5 KB of urandom per request.
# Tests that need determinism build a StrategyContext with their own seeded RNG.
_RNG = random.Random()


@dataclass(slots=True)
class RequestContext:
    """What the edge knows about the caller: ids, the key (by name, never the secret), hint headers."""

    request_id: str
    trace_id: str | None = None
    key_name: str | None = None
    hints: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Outcome:
    body: dict[str, Any]
    headers: dict[str, str]
    meta: StrategyMeta


@dataclass(slots=True)
class StreamOutcome:
    chunks: AsyncIterator[Chunk]
    headers: dict[str, str]
    meta: StrategyMeta


class Gateway:
    """One per process: the pool, the strategies, and the pipeline that serves requests with them."""

    def __init__(self, settings: Settings, *, pool: ProviderPool | None = None) -> None:
        self.settings = settings
        self.pool = pool if pool is not None else build_pool(settings)
        self.strategies: dict[str, Strategy] = {}
        self._direct: dict[str, Direct] = {}
        self.ready = False

    async def start(self) -> None:
        self.ready = True

    async def aclose(self) -> None:
        self.ready = False
        for provider in self.pool.providers:
            await provider.aclose()

    # --- routing ---------------------------------------------------------------------------------------

    def model_ids(self) -> list[str]:
        return [*self.settings.aliases, *self.pool]

    def has_model(self, model: str) -> bool:
        if model in self.strategies or model in self.settings.aliases:
            return True
        try:
            self.pool.resolve(model)
        except ModelNotFound:
            return False
        return True

    def route(self, model: str) -> Strategy:
        strategy = self.strategies.get(model)
        if strategy is not None:
            return strategy
        if model in BUILTIN_ALIASES or model in self.settings.strategies:
            raise ModelNotFound(f"The strategy alias '{model}' is reserved but not available yet", param="model")
        direct = self._direct.get(model)
        if direct is None:
            direct = self._direct[model] = Direct.for_model(self.pool, model)
        return direct

    def _context(self, strategy: Strategy, rc: RequestContext) -> StrategyContext:
        return StrategyContext(
            meta=StrategyMeta(strategy.name),
            deadline=time.monotonic() + self.settings.server.request_timeout_s,
            request_id=rc.request_id,
            rng=_RNG,
            hints=rc.hints,
        )

    # --- shaping what the client sees ------------------------------------------------------------------

    def _headers(self, meta: StrategyMeta, cache: str) -> dict[str, str]:
        return {
            "x-ultra-strategy": meta.chosen_strategy or meta.strategy,
            "x-ultra-providers": ",".join(meta.providers),
            "x-ultra-cache": cache,
            "x-ultra-cost-usd": f"{meta.cost_usd:.8f}",
        }

    def _metadata(self, meta: StrategyMeta, rc: RequestContext, cache: str) -> dict[str, Any]:
        out = meta.to_dict()
        out["cache"] = cache
        out["trace_id"] = rc.trace_id
        return out

    # --- the pipeline ----------------------------------------------------------------------------------

    async def complete(self, request: ChatRequest, rc: RequestContext) -> Outcome:
        strategy = self.route(request.model)
        ctx = self._context(strategy, rc)
        try:
            async with asyncio.timeout(ctx.remaining()):
                result = await strategy.complete(request, self.pool, ctx)
        except TimeoutError:
            raise UpstreamTimeout("the request did not finish within its total timeout") from None
        body = result.response.data
        body["model"] = request.model
        if any(a.usage is not None for a in result.meta.attempts):
            body["usage"] = result.meta.usage.to_dict()
        cache = "bypass"
        if self.settings.server.expose_metadata:
            body["ultra"] = self._metadata(result.meta, rc, cache)
        return Outcome(body, self._headers(result.meta, cache), result.meta)

    @asynccontextmanager
    async def stream(self, request: ChatRequest, rc: RequestContext) -> AsyncIterator[StreamOutcome]:
        """Entered before any byte is sent: failures while opening are ordinary HTTP errors."""
        strategy = self.route(request.model)
        ctx = self._context(strategy, rc)
        cache = "bypass"
        try:
            async with asyncio.timeout(ctx.remaining()):
                opening = strategy.stream(request, self.pool, ctx)
                stream = await opening.__aenter__()
        except TimeoutError:
            raise UpstreamTimeout("no upstream produced a first chunk within the total timeout") from None
        try:
            chunks = self._relay(stream, request, rc, ctx, cache)
            yield StreamOutcome(chunks, self._headers(ctx.meta, cache), ctx.meta)
        except BaseException as exc:
            if not await opening.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await opening.__aexit__(None, None, None)

    async def _relay(
        self, stream: AsyncIterable[Chunk], request: ChatRequest, rc: RequestContext, ctx: StrategyContext, cache: str
    ) -> AsyncIterator[Chunk]:
        """The client's view of a strategy stream: its model name, SDK-shaped tool-call deltas, no upstream usage
        chunks, and at the end the summed usage (when asked) and the `ultra` metadata on the last chunk."""
        model = request.model
        normalize = ToolCallDeltaNormalizer()
        held: list[Chunk] = []  # finish_reason chunks wait so the metadata can ride on the last one
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ctx.remaining()
        iterator = stream.__aiter__()
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise UpstreamTimeout("the stream did not finish within the request's total timeout") from None
            choices = chunk.get("choices")
            if not choices:
                continue  # an upstream usage chunk: usage is summed over every call and sent once, below
            chunk["model"] = model
            chunk.pop("usage", None)
            normalize(chunk)
            if any(c.get("finish_reason") is not None for c in choices):
                held.append(chunk)
                continue
            if held:
                for waiting in held:
                    yield waiting
                held.clear()
            yield chunk
        tail = held
        if request.include_usage:
            template = tail[-1] if tail else {"model": model}
            tail.append(usage_chunk({**template, "model": model}, ctx.meta.usage))
        if tail and self.settings.server.expose_metadata:
            tail[-1]["ultra"] = self._metadata(ctx.meta, rc, cache)
        for chunk in tail:
            yield chunk
