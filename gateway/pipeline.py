"""The request pipeline, framework-free. One request reads as a line:

    admission (authorize → route → context → cache plan → admit → cache lookup)
      → strategy (whole answer, or a stream relayed chunk by chunk)
      → settle (tokens actually used; the cache store happens in the background)

`Pipeline.complete` and `Pipeline.stream` share the admission step and return typed outcomes: the answer (or its
chunks), the strategy's metadata, the cache status and where the caller's limits stand. The HTTP edge renders
those as headers; the request observer (telemetry) turns them into metrics and spans. Nothing here knows an
HTTP header name.

Cache hits get a fresh `id` and `created`, the usage the answer originally reported, no provider calls
(`ultra.calls: []`, cost 0) and no tokens charged (the reservation is refunded); they still count against the
requests-per-minute limits.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.auth import ANONYMOUS, Principal
from gateway.cache.keys import CacheKey, Scope, make_key, scope_id
from gateway.cache.responses import Lookup, ResponseCache
from gateway.core.aio import start
from gateway.core.errors import BudgetState, LimitState, UpstreamTimeout
from gateway.core.pool import ProviderPool
from gateway.core.stats import LiveStats
from gateway.core.stream import ClientChunks, replay
from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage, new_completion_id
from gateway.ratelimit.limiter import RateLimiter, Ticket, key_rule
from gateway.ratelimit.spend import Spend, SpendTicket
from gateway.routing import Router
from gateway.telemetry.observer import RequestObserver
from gateway.telemetry.tracing import use
from strategies.base import Strategy, StrategyContext, StrategyMeta

__all__ = ["Answer", "CacheDirectives", "CacheStatus", "Caller", "Pipeline", "StreamedAnswer"]

CacheStatus = Literal["hit", "miss", "bypass"]


@dataclass(frozen=True, slots=True)
class CacheDirectives:
    """What the client asked of the cache: read it, write it, and for how long (None: the configured TTL)."""

    read: bool = True
    write: bool = True
    ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """What the edge knows about who is asking: ids, the key (a principal, never the secret), routing hints
    (`priority` …) and the cache directives."""

    request_id: str
    principal: Principal = ANONYMOUS
    trace_id: str | None = None
    hints: Mapping[str, str] = field(default_factory=dict)
    cache: CacheDirectives = CacheDirectives()


@dataclass(slots=True)
class Answer:
    body: dict[str, Any]
    meta: StrategyMeta
    cache: CacheStatus
    limits: Mapping[str, LimitState]
    budget: BudgetState | None = None


@dataclass(slots=True)
class StreamedAnswer:
    """`chunks` must be consumed inside the `Pipeline.stream` block; `meta` is final when they end."""

    chunks: AsyncIterator[Chunk]
    meta: StrategyMeta
    cache: CacheStatus
    limits: Mapping[str, LimitState]
    budget: BudgetState | None = None


@dataclass(slots=True)
class _Admitted:
    """One admitted request, from the admission step to settlement."""

    strategy: Strategy
    pool: ProviderPool  # what the strategy may call for this caller
    ctx: StrategyContext
    lookup: Lookup
    limits: Mapping[str, LimitState]
    cache_bypass: str | None = None  # why the cache was not used: sampled, no-cache, no-store
    budget: BudgetState | None = None
    in_flight: bool = False  # calls started and not seen to the end: usage unknown, keep the estimate charged


class Pipeline:
    def __init__(
        self,
        router: Router,
        observer: RequestObserver,
        live: LiveStats,
        *,
        cache: ResponseCache | None,
        cache_scope: Scope,
        cache_secret: bytes | None,
        cache_sampled: bool = False,
        limiter: RateLimiter | None,
        spend: Spend | None = None,
        request_timeout_s: float,
        expose_metadata: bool,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.router = router
        self.observer = observer
        self.live = live
        self.cache = cache
        self.cache_scope = cache_scope
        self.cache_secret = cache_secret
        self.cache_sampled = cache_sampled
        self.limiter = limiter
        self.spend = spend
        self.request_timeout_s = request_timeout_s
        self.expose_metadata = expose_metadata
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()

    # --- the two entries: whole answers and streams ------------------------------------------------------

    async def complete(self, request: ChatRequest, caller: Caller) -> Answer:
        name = self.router.strategy_name(request.model)
        span = self.observer.start(request.model, name, False)
        try:
            with use(span):
                answer = await self._complete(request, caller)
        except BaseException as exc:
            self.observer.failed(span, request.model, name, exc)
            raise
        self.observer.done(span, request.model, answer.meta, answer.cache, answer.limits)
        return answer

    @asynccontextmanager
    async def stream(self, request: ChatRequest, caller: Caller) -> AsyncIterator[StreamedAnswer]:
        """Entered before any byte is sent: failures while opening are ordinary errors with their status."""
        name = self.router.strategy_name(request.model)
        span = self.observer.start(request.model, name, True)
        async with AsyncExitStack() as stack:
            try:
                with use(span):  # the calls made while opening are its children
                    answer = await stack.enter_async_context(self._stream(request, caller))
            except BaseException as exc:
                self.observer.failed(span, request.model, name, exc)
                raise
            # recorded when the stream has ended, with the final account
            stack.callback(self.observer.done, span, request.model, answer.meta, answer.cache, answer.limits)
            yield answer

    async def _complete(self, request: ChatRequest, caller: Caller) -> Answer:
        async with self._admission(request, caller) as admitted:
            ctx, lookup = admitted.ctx, admitted.lookup
            if lookup.response is not None:
                body, meta = self._from_cache(lookup.response, request, admitted.strategy)
                if self.expose_metadata:
                    body["ultra"] = self.metadata(meta, caller, "hit")
                return Answer(body, meta, "hit", admitted.limits, admitted.budget)
            admitted.in_flight = True
            try:
                async with asyncio.timeout(ctx.remaining()):
                    result = await admitted.strategy.complete(request, admitted.pool, ctx)
            except TimeoutError:
                admitted.in_flight = False
                raise UpstreamTimeout("the request did not finish within its total timeout") from None
            except asyncio.CancelledError:
                raise  # the client left: calls in flight may still be billed
            except BaseException:
                admitted.in_flight = False
                raise
            admitted.in_flight = False
            body = result.response.data
            body["model"] = request.model
            if any(a.usage is not None for a in result.meta.attempts):
                body["usage"] = result.meta.usage.to_dict()
            lookup.fill(body)
            if self.expose_metadata:
                body["ultra"] = self.metadata(result.meta, caller, lookup.status, admitted.cache_bypass)
            return Answer(body, result.meta, lookup.status, admitted.limits, admitted.budget)

    @asynccontextmanager
    async def _stream(self, request: ChatRequest, caller: Caller) -> AsyncIterator[StreamedAnswer]:
        async with self._admission(request, caller) as admitted:
            ctx, lookup = admitted.ctx, admitted.lookup
            if lookup.response is not None:
                body, meta = self._from_cache(lookup.response, request, admitted.strategy)
                response = ChatResponse(body)
                usage = (response.usage or Usage()) if request.include_usage else None
                metadata = self.metadata(meta, caller, "hit") if self.expose_metadata else None
                replayed = _iterate(replay(response, usage, metadata))
                yield StreamedAnswer(replayed, meta, "hit", admitted.limits, admitted.budget)
                return
            async with AsyncExitStack() as stack:
                try:
                    async with asyncio.timeout(ctx.remaining()):
                        stream = await stack.enter_async_context(admitted.strategy.stream(request, admitted.pool, ctx))
                except TimeoutError:
                    raise UpstreamTimeout("no upstream produced a first chunk within the total timeout") from None
                admitted.in_flight = True
                chunks = self._relay(stream, request, caller, admitted)
                yield StreamedAnswer(chunks, ctx.meta, lookup.status, admitted.limits, admitted.budget)

    def feedback(self, request_id: str, score: float) -> bool:
        """A graded outcome (0-1) for a recent request, for the strategies that learn from outcomes (adaptive);
        False when no strategy remembers the request."""
        for strategy in self.router.strategies.values():
            record = getattr(strategy, "feedback", None)
            if record is not None and record(request_id, score):
                return True
        return False

    # --- the admission step: everything before the strategy, and settlement after it ---------------------

    @asynccontextmanager
    async def _admission(self, request: ChatRequest, caller: Caller) -> AsyncIterator[_Admitted]:
        """authorize → route → context → cache plan → admit → lookup; on the way out, settle the tokens: what
        every call consumed, or (calls cut mid-way) the estimate stays charged."""
        strategy, pool = self.router.authorized(caller.principal, request.model)
        ctx = self._context(strategy, caller)
        key, bypass = self._cache_plan(request, caller)
        spent = await self._budget(request, caller)
        try:
            ticket = await self._admit(request, caller)
        except BaseException:
            if spent is not None and self.spend is not None:
                self.spend.settle_soon(spent, 0.0)  # refused by a rate limit: nothing was spent
            raise
        admitted: _Admitted | None = None
        try:
            async with self._lookup(key, caller, ctx) as lookup:
                limits = ticket.limits if ticket is not None else {}
                bypassed = bypass if lookup.status == "bypass" else None
                admitted = _Admitted(strategy, pool, ctx, lookup, limits, bypassed)
                if spent is not None:
                    admitted.budget = spent.budget
                yield admitted
        finally:
            cut = admitted is not None and admitted.in_flight
            if ticket is not None and self.limiter is not None:
                self.limiter.settle_soon(ticket, None if cut else ctx.meta.usage.total_tokens)
            cost = ctx.meta.cost_usd
            if spent is not None and self.spend is not None:
                self.spend.settle_soon(spent, None if cut else cost)
            if cost:
                principal = caller.principal
                self.observer.spent(
                    None if principal.anonymous else principal.name, principal.tenant, request.model, cost
                )

    def _context(self, strategy: Strategy, caller: Caller) -> StrategyContext:
        return StrategyContext(
            meta=StrategyMeta(strategy.name),
            deadline=self.clock() + self.request_timeout_s,
            request_id=caller.request_id,
            clock=self.clock,
            rng=self.rng,
            hints=dict(caller.hints),
            live=self.live,
            on_attempt=self.observer.attempt,
            on_retry=self.observer.retried,
        )

    def _cache_plan(self, request: ChatRequest, caller: Caller) -> tuple[CacheKey | None, str | None]:
        """The request's cache key, or why the cache is bypassed. A sampled request (temperature above 0, an
        omitted one included since the API's default is 1, and no seed) asks for a new sample: it is neither
        served from nor stored in the cache unless `cache.sampled` is on."""
        if self.cache is None:
            return None, None
        if not self.cache_sampled and _sampled(request.body):
            return None, "sampled"
        wanted = caller.cache
        bypass = "no-store" if not wanted.write else "no-cache" if not wanted.read else None
        principal = caller.principal
        scope = scope_id(self.cache_scope, key_name=principal.name, tenant=principal.tenant)
        # Hints that steer routing change the answer, so they are part of the key.
        return make_key(request.body, scope=scope, hints=caller.hints, secret=self.cache_secret), bypass

    def _lookup(
        self, key: CacheKey | None, caller: Caller, ctx: StrategyContext
    ) -> AbstractAsyncContextManager[Lookup]:
        if key is None or self.cache is None:
            return _NO_CACHE
        wanted = caller.cache
        return self.cache.lookup(key, read=wanted.read, write=wanted.write, ttl_s=wanted.ttl_s, wait_s=ctx.remaining())

    async def _budget(self, request: ChatRequest, caller: Caller) -> SpendTicket | None:
        """The key's and tenant's budgets: the request's worst-case cost held, or 429 `budget_exceeded`."""
        if self.spend is None:
            return None
        principal = caller.principal
        key = None if principal.anonymous else principal.name
        return await self.spend.admit(
            key=key, key_budget=principal.budget, tenant=principal.tenant, model=request.model, body=request.body
        )

    async def _admit(self, request: ChatRequest, caller: Caller) -> Ticket | None:
        if self.limiter is None:
            return None
        principal = caller.principal
        rule = key_rule(principal.name, rpm=principal.rpm, tpm=principal.tpm)
        return await self.limiter.admit(key=rule, model=request.model, body=request.body)

    # --- shaping the answer ---------------------------------------------------------------------------

    def metadata(
        self, meta: StrategyMeta, caller: Caller, cache: CacheStatus, bypass: str | None = None
    ) -> dict[str, Any]:
        """The `ultra` object of the body: every call, the summed cost, the cache status (and why it was
        bypassed) and the trace id."""
        out = meta.to_dict()
        out["cache"] = cache
        if bypass is not None:
            out["cache_bypass"] = bypass
        out["trace_id"] = caller.trace_id
        return out

    @staticmethod
    def _from_cache(
        cached: dict[str, Any], request: ChatRequest, strategy: Strategy
    ) -> tuple[dict[str, Any], StrategyMeta]:
        """A stored answer as this request's answer: its own id, the alias it asked for, no provider calls."""
        cached["id"] = new_completion_id()
        cached["created"] = int(time.time())
        cached["model"] = request.model
        return cached, StrategyMeta(strategy.name)

    async def _relay(
        self, stream: AsyncIterable[Chunk], request: ChatRequest, caller: Caller, admitted: _Admitted
    ) -> AsyncIterator[Chunk]:
        """The client's view of a strategy stream (see `ClientChunks`), bounded by the request's deadline. A
        stream that ends cleanly is offered to the cache as one `chat.completion`."""
        ctx, lookup = admitted.ctx, admitted.lookup
        rewrite = ClientChunks(request.model, accumulate=lookup.writable)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ctx.remaining()
        iterator = stream.__aiter__()
        while True:
            try:
                # A chunk already read costs no timer; only a wait for the upstream is bounded by the deadline.
                ready, value = start(iterator.__anext__())
                if not ready:
                    async with asyncio.timeout_at(deadline):
                        value = await value  # type: ignore[misc]
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise UpstreamTimeout("the stream did not finish within the request's total timeout") from None
            for out in rewrite.feed(value):  # type: ignore[arg-type]
                yield out
        admitted.in_flight = False
        meta = ctx.meta
        reported = any(a.usage is not None for a in meta.attempts)
        answer = rewrite.answer()
        if answer is not None:
            if reported:
                answer.data["usage"] = meta.usage.to_dict()
            lookup.fill(answer.data)
        metadata = self.metadata(meta, caller, lookup.status, admitted.cache_bypass) if self.expose_metadata else None
        for out in rewrite.tail(meta.usage if request.include_usage else None, metadata):
            yield out


def _sampled(body: Mapping[str, Any]) -> bool:
    temperature = body.get("temperature")
    deterministic = isinstance(temperature, int | float) and temperature <= 0
    return body.get("seed") is None and not deterministic


async def _iterate(chunks: list[Chunk]) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk


class _NoCache:
    """The lookup when the cache is off or bypassed: a class, not a generator-based context manager (a fresh
    generator and its wrapper per request cost more than the rest of this step)."""

    __slots__ = ()

    async def __aenter__(self) -> Lookup:
        return Lookup("bypass")

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_CACHE = _NoCache()
