"""The request pipeline, framework-free: authorize → route → admit (rate limits) → cache lookup → strategy →
cache store → settle tokens → shape what the client gets (ARCHITECTURE "one request, end to end").

The HTTP edge (gateway/http) authenticates, parses and renders; everything between is here. Work that the
answer does not need (cache stores, token settlement) runs in the background and never delays it.

Cache hits (SPEC §6): a fresh `id` and `created`, the usage the answer originally reported, no provider calls
(`ultra.calls: []`, cost 0), and no tokens charged (the reservation is refunded); the request still counts
against the requests-per-minute limits.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.auth import ANONYMOUS, Authenticator, Principal
from gateway.backends import build_cache, build_limiter, cache_secret
from gateway.cache.keys import CacheKey, make_key, scope_id
from gateway.cache.responses import Lookup, ResponseCache
from gateway.core.errors import GatewayError, InvalidRequest, ModelNotFound, RateLimited, UpstreamTimeout
from gateway.core.pool import ProviderPool
from gateway.core.stats import LiveStats
from gateway.core.stream import StreamAccumulator, ToolCallDeltaNormalizer, response_to_chunks, usage_chunk
from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage, new_completion_id
from gateway.ratelimit.limiter import RateLimiter, Ticket, key_rule
from gateway.registry import build_pool
from gateway.settings import Settings
from gateway.telemetry.instrumented import PROVIDER_NAMES
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.tracing import Tracing, fail, use
from strategies import build_strategies
from strategies.base import Attempt, Strategy, StrategyContext, StrategyMeta
from strategies.direct import Direct

__all__ = ["Gateway", "Outcome", "RequestContext", "StreamOutcome"]

log = logging.getLogger("ultra_gateway")

# One process-wide RNG for strategies: seeding a fresh random.Random() reads 2.5 KB of urandom per request.
# Tests that need determinism build a StrategyContext with their own seeded RNG.
_RNG = random.Random()


@dataclass(slots=True)
class RequestContext:
    """What the edge knows about the caller: ids, the key (by name, never the secret), hint headers, and the
    raw cache headers (`Cache-Control`, `x-ultra-cache-ttl`), which the pipeline interprets."""

    request_id: str
    trace_id: str | None = None
    key_name: str | None = None
    hints: dict[str, str] = field(default_factory=dict)
    principal: Principal = ANONYMOUS
    cache_control: str | None = None
    cache_ttl: str | None = None


@dataclass(slots=True)
class _CachePlan:
    key: CacheKey
    read: bool
    write: bool
    ttl_s: float | None


@dataclass(slots=True)
class _StreamProgress:
    opened: bool = False
    finished: bool = False


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

    def __init__(
        self,
        settings: Settings,
        *,
        pool: ProviderPool | None = None,
        tracing: Tracing | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock  # each request's deadline and its strategy's timings (tests pass a virtual clock)
        self.tracing = tracing if tracing is not None else Tracing.from_env(settings.telemetry.service_name)
        self.pool = pool if pool is not None else build_pool(settings, tracer=self.tracing.tracer)
        aliases: dict[str, tuple[str, dict[str, Any]]] = {
            alias: (s.kind, s.model_extra or {}) for alias, s in settings.strategies.items()
        }
        self.strategies: dict[str, Strategy] = build_strategies(aliases)
        self.metrics = Metrics()
        self.live = LiveStats()  # per-deployment latency, success and breakers, shared by every strategy
        self._direct: dict[str, Direct] = {}
        self.ready = False
        self.auth = Authenticator.from_settings(settings.auth)
        self._cache_secret = cache_secret(settings.cache)
        # Built in start(): Redis clients belong to the event loop that serves requests.
        self.cache: ResponseCache | None = None
        self.limiter: RateLimiter | None = None

    async def start(self) -> None:
        self.cache = build_cache(self.settings.cache)
        self.limiter = build_limiter(self.settings.rate_limits)
        self.ready = True

    async def aclose(self) -> None:
        self.ready = False
        if self.cache is not None:
            await self.cache.aclose()
        if self.limiter is not None:
            await self.limiter.aclose()
        for provider in self.pool.providers:
            await provider.aclose()
        self.tracing.shutdown()

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """`/health/ready`: config loaded, and each configured Redis answering a PING within its budget."""
        checks = {"config": "ok" if self.ready else "not started"}
        ok = self.ready
        probes: dict[str, Coroutine[Any, Any, bool]] = {}
        if self.cache is not None and self.cache.backend.name == "redis":
            probes["redis_cache"] = self.cache.ping()
        if self.limiter is not None and self.limiter.backend.name == "redis":
            probes["redis_rate_limits"] = self.limiter.ping()
        results = await asyncio.gather(*probes.values())
        for name, up in zip(probes, results, strict=True):
            checks[name] = "ok" if up else "unreachable"
            ok = ok and up
        return ok, checks

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
        direct = self._direct.get(model)
        if direct is None:
            direct = self._direct[model] = Direct.for_model(self.pool, model)
        return direct

    def _context(self, strategy: Strategy, rc: RequestContext) -> StrategyContext:
        return StrategyContext(
            meta=StrategyMeta(strategy.name),
            deadline=self.clock() + self.settings.server.request_timeout_s,
            clock=self.clock,
            request_id=rc.request_id,
            rng=_RNG,
            hints=rc.hints,
            live=self.live,
            on_attempt=self._record_attempt,
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

    # --- admission, cache, settlement --------------------------------------------------------------------

    def _cache_plan(self, request: ChatRequest, rc: RequestContext) -> _CachePlan | None:
        """What the cache may do for this request; a malformed `x-ultra-cache-ttl` is a 400 (before any quota)."""
        if self.cache is None:
            return None
        directives = {d.strip().lower() for d in (rc.cache_control or "").split(",")}
        no_store = "no-store" in directives
        ttl: float | None = None
        if rc.cache_ttl is not None:
            try:
                ttl = float(rc.cache_ttl)
            except ValueError:
                ttl = -1.0
            if not ttl >= 0 or ttl == float("inf"):
                raise InvalidRequest("x-ultra-cache-ttl must be a number of seconds >= 0", param="x-ultra-cache-ttl")
        settings = self.settings.cache
        principal = rc.principal
        scope = scope_id(settings.scope, key_name=principal.name, tenant=principal.tenant)
        # Hints that steer routing change the answer; the cache's own headers do not.
        hints = {k: v for k, v in rc.hints.items() if not k.startswith("x-ultra-cache")}
        key = make_key(request.body, scope=scope, hints=hints, secret=self._cache_secret)
        return _CachePlan(key, not (no_store or "no-cache" in directives), not no_store, ttl)

    def _lookup(self, plan: _CachePlan | None, ctx: StrategyContext) -> AbstractAsyncContextManager[Lookup]:
        if plan is None or self.cache is None:
            return _no_cache()
        return self.cache.lookup(plan.key, read=plan.read, write=plan.write, ttl_s=plan.ttl_s, wait_s=ctx.remaining())

    async def _admit(self, request: ChatRequest, rc: RequestContext) -> Ticket | None:
        if self.limiter is None:
            return None
        principal = rc.principal
        rule = key_rule(principal.name, rpm=principal.rpm, tpm=principal.tpm)
        return await self.limiter.admit(key=rule, model=request.model, body=request.body)

    def _settle(self, ticket: Ticket | None, actual_tokens: int | None) -> None:
        """Charge real usage instead of the estimate, in the background (it does not change the answer)."""
        if ticket is not None and self.limiter is not None:
            self.limiter.settle_soon(ticket, actual_tokens)

    def _from_cache(
        self, cached: dict[str, Any], request: ChatRequest, rc: RequestContext, strategy: Strategy
    ) -> tuple[dict[str, Any], StrategyMeta]:
        """A stored answer as this request's answer: its own id, the alias it asked for, no provider calls."""
        cached["id"] = new_completion_id()
        cached["created"] = int(time.time())
        cached["model"] = request.model
        return cached, StrategyMeta(strategy.name)

    @staticmethod
    def _with_limits(headers: dict[str, str], ticket: Ticket | None) -> dict[str, str]:
        if ticket is not None:
            headers.update(ticket.headers)
        return headers

    # --- the pipeline ----------------------------------------------------------------------------------

    # --- tracing: the strategy span around the pipeline (nothing at all when tracing is off) --------------

    def _strategy_name(self, model: str) -> str:
        return model if model in self.strategies else "direct"

    def _strategy_span(self, request: ChatRequest) -> Any:
        if not self.tracing.enabled:
            return None
        name = self._strategy_name(request.model)
        return self.tracing.start_span(
            f"ultra.strategy {name}",
            {"ultra.strategy": name, "ultra.model": request.model, "ultra.stream": request.stream},
        )

    @staticmethod
    def _span_done(span: Any, meta: StrategyMeta, headers: dict[str, str]) -> None:
        attributes: dict[str, Any] = {
            "ultra.cache": headers.get("x-ultra-cache", ""),
            "ultra.providers": headers.get("x-ultra-providers", ""),
            "ultra.cost_usd": meta.cost_usd,
            "ultra.calls": len(meta.attempts),
        }
        if meta.chosen_strategy:
            attributes["ultra.chosen_strategy"] = meta.chosen_strategy
        for header in ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"):
            if header in headers:
                attributes[f"ultra.{header[2:].replace('-', '_')}"] = int(headers[header])
        span.set_attributes(attributes)  # one call: each set_attribute takes the span's lock

    @staticmethod
    def _span_failed(span: Any, exc: BaseException) -> None:
        if isinstance(exc, GatewayError):
            fail(span, exc.code or type(exc).__name__, exc.message)
        elif isinstance(exc, asyncio.CancelledError):
            fail(span, "cancelled", "the client went away")
        else:
            fail(span, type(exc).__qualname__, "internal error")

    def _request_done(self, request: ChatRequest, meta: StrategyMeta, headers: dict[str, str], span: Any) -> None:
        strategy = meta.chosen_strategy or meta.strategy
        self.metrics.requests.inc((request.model, strategy, "200"))
        self.metrics.cache.inc((headers.get("x-ultra-cache", "bypass"),))
        self.metrics.cost.inc((request.model,), meta.cost_usd)
        if span is not None:
            self._span_done(span, meta, headers)
            span.end()

    def _request_failed(self, request: ChatRequest, exc: BaseException, span: Any) -> None:
        if isinstance(exc, GatewayError):
            status = str(exc.status)
        else:
            status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "500"
        name = self._strategy_name(request.model)
        self.metrics.requests.inc((request.model, name, status))
        if isinstance(exc, RateLimited):
            self.metrics.rate_limited.inc((request.model,))
        if span is not None:
            self._span_failed(span, exc)
            span.end()

    def _record_attempt(self, attempt: Attempt) -> None:
        """Every upstream call, as the GenAI metrics and the provider-error and breaker series."""
        deployment = attempt.deployment
        provider = deployment.provider
        error = {"ok": "", "rejected": "", "cancelled": "cancelled"}.get(attempt.status)
        if error is None:
            error = attempt.error_type or "error"
        labels = ("chat", PROVIDER_NAMES.get(provider.kind, provider.kind), deployment.model, provider.name)
        self.metrics.duration.observe((*labels, error), attempt.latency_ms / 1000)
        if attempt.usage is not None:
            self.metrics.tokens.observe((*labels, "input"), attempt.usage.prompt_tokens)
            self.metrics.tokens.observe((*labels, "output"), attempt.usage.completion_tokens)
        if attempt.status == "error":
            self.metrics.provider_errors.inc((deployment.name, attempt.error_type or "error"))
        self.metrics.breaker.set((deployment.name,), 0.0 if self.live.breaker(deployment.name) == "closed" else 1.0)

    async def complete(self, request: ChatRequest, rc: RequestContext) -> Outcome:
        span = self._strategy_span(request)
        try:
            with use(span):
                outcome = await self._complete(request, rc)
        except BaseException as exc:
            self._request_failed(request, exc, span)
            raise
        self._request_done(request, outcome.meta, outcome.headers, span)
        return outcome

    @asynccontextmanager
    async def stream(self, request: ChatRequest, rc: RequestContext) -> AsyncIterator[StreamOutcome]:
        """Entered before any byte is sent: failures while opening are ordinary HTTP errors."""
        span = self._strategy_span(request)
        async with AsyncExitStack() as stack:
            try:
                with use(span):  # the calls made while opening are its children
                    outcome = await stack.enter_async_context(self._stream(request, rc))
            except BaseException as exc:
                self._request_failed(request, exc, span)
                raise
            # recorded when the stream has ended, with the final account
            stack.callback(self._request_done, request, outcome.meta, outcome.headers, span)
            yield outcome

    async def _complete(self, request: ChatRequest, rc: RequestContext) -> Outcome:
        self.auth.authorize(rc.principal, request.model)
        strategy = self.route(request.model)
        ctx = self._context(strategy, rc)
        plan = self._cache_plan(request, rc)
        ticket = await self._admit(request, rc)
        actual: int | None = 0
        try:
            async with self._lookup(plan, ctx) as lookup:
                if lookup.response is not None:
                    body, meta = self._from_cache(lookup.response, request, rc, strategy)
                    if self.settings.server.expose_metadata:
                        body["ultra"] = self._metadata(meta, rc, "hit")
                    return Outcome(body, self._with_limits(self._headers(meta, "hit"), ticket), meta)
                try:
                    async with asyncio.timeout(ctx.remaining()):
                        result = await strategy.complete(request, self.pool, ctx)
                except TimeoutError:
                    raise UpstreamTimeout("the request did not finish within its total timeout") from None
                body = result.response.data
                body["model"] = request.model
                if any(a.usage is not None for a in result.meta.attempts):
                    body["usage"] = result.meta.usage.to_dict()
                lookup.fill(body)
                cache = lookup.status
                if self.settings.server.expose_metadata:
                    body["ultra"] = self._metadata(result.meta, rc, cache)
                return Outcome(body, self._with_limits(self._headers(result.meta, cache), ticket), result.meta)
        except asyncio.CancelledError:
            actual = None  # the client left: calls in flight may still be billed, keep the estimate charged
            raise
        finally:
            if actual is not None:
                actual = ctx.meta.usage.total_tokens  # what every call made for this request consumed (0 on a hit)
            self._settle(ticket, actual)

    @asynccontextmanager
    async def _stream(self, request: ChatRequest, rc: RequestContext) -> AsyncIterator[StreamOutcome]:
        self.auth.authorize(rc.principal, request.model)
        strategy = self.route(request.model)
        ctx = self._context(strategy, rc)
        plan = self._cache_plan(request, rc)
        ticket = await self._admit(request, rc)
        progress = _StreamProgress()
        try:
            async with AsyncExitStack() as stack:
                lookup = await stack.enter_async_context(self._lookup(plan, ctx))
                if lookup.response is not None:
                    body, meta = self._from_cache(lookup.response, request, rc, strategy)
                    progress.opened = progress.finished = True  # a hit costs no tokens, however it is read
                    headers = self._with_limits(self._headers(meta, "hit"), ticket)
                    yield StreamOutcome(self._replay(body, request, rc, meta), headers, meta)
                    return
                try:
                    async with asyncio.timeout(ctx.remaining()):
                        stream = await stack.enter_async_context(strategy.stream(request, self.pool, ctx))
                except TimeoutError:
                    raise UpstreamTimeout("no upstream produced a first chunk within the total timeout") from None
                progress.opened = True
                chunks = self._relay(stream, request, rc, ctx, lookup, progress)
                headers = self._with_limits(self._headers(ctx.meta, lookup.status), ticket)
                yield StreamOutcome(chunks, headers, ctx.meta)
        finally:
            # Finished: charge what was used. Failed before the first chunk: nothing was generated, charge what
            # the failed calls reported (usually 0). Cut mid-way: usage unknown, the estimate stays charged.
            if progress.finished or not progress.opened:
                self._settle(ticket, ctx.meta.usage.total_tokens)
            else:
                self._settle(ticket, None)

    async def _replay(
        self, body: dict[str, Any], request: ChatRequest, rc: RequestContext, meta: StrategyMeta
    ) -> AsyncIterator[Chunk]:
        """A cached answer as the chunks of a stream (reference §5): role, content, finish, usage if asked."""
        response = ChatResponse(body)
        chunks = response_to_chunks(response)
        if request.include_usage:
            chunks.append(usage_chunk(chunks[-1], response.usage or Usage()))
        if self.settings.server.expose_metadata:
            chunks[-1]["ultra"] = self._metadata(meta, rc, "hit")
        for chunk in chunks:
            yield chunk

    async def _relay(
        self,
        stream: AsyncIterable[Chunk],
        request: ChatRequest,
        rc: RequestContext,
        ctx: StrategyContext,
        lookup: Lookup,
        progress: _StreamProgress,
    ) -> AsyncIterator[Chunk]:
        """The client's view of a strategy stream: its model name, SDK-shaped tool-call deltas, no upstream usage
        chunks, and at the end the summed usage (when asked) and the `ultra` metadata on the last chunk.
        A stream that ends cleanly is folded into one `chat.completion` and offered to the cache."""
        model = request.model
        cache = lookup.status
        accumulator = StreamAccumulator() if lookup.writable else None
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
            if accumulator is not None:
                accumulator.add(chunk)
            if any(c.get("finish_reason") is not None for c in choices):
                held.append(chunk)
                continue
            if held:
                for waiting in held:
                    yield waiting
                held.clear()
            yield chunk
        progress.finished = True
        if accumulator is not None and accumulator.complete:
            answer = accumulator.response().data
            if any(a.usage is not None for a in ctx.meta.attempts):
                answer["usage"] = ctx.meta.usage.to_dict()
            lookup.fill(answer)
        tail = held
        if request.include_usage:
            template = tail[-1] if tail else {"model": model}
            tail.append(usage_chunk({**template, "model": model}, ctx.meta.usage))
        if tail and self.settings.server.expose_metadata:
            tail[-1]["ultra"] = self._metadata(ctx.meta, rc, cache)
        for chunk in tail:
            yield chunk


@asynccontextmanager
async def _no_cache() -> AsyncIterator[Lookup]:
    yield Lookup("bypass")
