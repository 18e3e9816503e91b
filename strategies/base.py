"""The Strategy protocol and what every strategy shares: the context it runs in, and the record of its calls.

A strategy decides which deployments to call, in what order or combination. It sees providers only through
`Deployment`s and makes every call through `StrategyContext.call` / `StrategyContext.open_stream`, which time
the call, price it and record it as an `Attempt`; the metadata the client sees is built from those
records, so usage and cost are always the sum over every call actually made, losers and failures included.

A strategy reads nothing global: the deadline, clock, RNG, live stats and hooks come in the context, so tests
are deterministic.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.core.errors import DeploymentUnavailable, GatewayError, UpstreamError, UpstreamRateLimited
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.provider import CallOptions, ChunkStream
from gateway.core.stats import LiveStats, StatsView
from gateway.core.tokens import chunk_tokens, estimate_completion, estimate_usage
from gateway.core.types import ChatRequest, ChatResponse, Chunk, Usage
from strategies._fallback import DEFAULT_FALLBACK, FallbackPolicy

__all__ = [
    "Attempt",
    "AttemptStatus",
    "RecordedStream",
    "Role",
    "Strategy",
    "StrategyContext",
    "StrategyMeta",
    "StrategyResult",
    "StrategyStream",
]

Role = Literal["candidate", "analysis", "synthesis", "attempt", "judge", "hedge", "proposer", "aggregator"]
AttemptStatus = Literal["ok", "error", "cancelled", "rejected", "skipped"]


@dataclass(slots=True)
class Attempt:
    """One provider call made for a request (after the provider's own retries)."""

    deployment: Deployment
    role: Role
    status: AttemptStatus = "ok"
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    usage: Usage | None = None
    error: str | None = None
    error_type: str | None = None
    note: str | None = None

    @property
    def cost_usd(self) -> float:
        return self.deployment.cost(self.usage)

    def failed(self, exc: GatewayError) -> None:
        """Record a call that raised; an upstream error learns which deployment it came from."""
        self.status, self.error = "error", exc.message
        self.error_type = exc.kind if isinstance(exc, UpstreamError) else type(exc).__name__
        if isinstance(exc, UpstreamError):
            exc.deployment = exc.deployment or self.deployment.name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "provider": self.deployment.provider.name,
            "model": self.deployment.model,
            "role": self.role,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 2),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 2),
            "usage": None if self.usage is None else self.usage.to_dict(),
            "cost_usd": round(self.cost_usd, 10),
        }
        if self.usage is not None and self.usage.estimated:
            out["usage_estimated"] = True
        if self.error is not None:
            out["error"] = self.error
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(slots=True)
class StrategyMeta:
    """What a strategy did for one request: every attempt, who served the answer, and (adaptive) why."""

    strategy: str
    attempts: list[Attempt] = field(default_factory=list)
    served_by: list[Deployment] = field(default_factory=list)
    chosen_strategy: str | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for attempt in self.attempts:
            if attempt.usage is not None:
                total = total + attempt.usage
        return total

    @property
    def cost_usd(self) -> float:
        return sum(attempt.cost_usd for attempt in self.attempts)

    @property
    def providers(self) -> list[str]:
        """`provider/model` of every deployment that contributed to the answer, in order, without repeats."""
        return list(dict.fromkeys(d.name for d in self.served_by))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "calls": [attempt.to_dict() for attempt in self.attempts],
            "cost_usd": round(self.cost_usd, 10),
        }
        if self.chosen_strategy is not None:
            out["chosen_strategy"] = self.chosen_strategy
        if self.reason is not None:
            out["reason"] = self.reason
        out.update(self.extra)
        return out


@dataclass(slots=True)
class StrategyResult:
    response: ChatResponse
    meta: StrategyMeta


class StrategyStream(Protocol):
    """Chunks for the client; `meta` is complete once iteration ends."""

    meta: StrategyMeta

    def __aiter__(self) -> AsyncIterator[Chunk]: ...


class Strategy(Protocol):
    name: str

    async def complete(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> StrategyResult: ...

    def stream(
        self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext
    ) -> AbstractAsyncContextManager[StrategyStream]: ...


@dataclass(slots=True)
class StrategyContext:
    """Everything a strategy may read for one request. `meta` collects the attempts as calls are made."""

    meta: StrategyMeta
    deadline: float
    request_id: str = ""
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    hints: dict[str, str] = field(default_factory=dict)
    budget_usd: float | None = None
    on_attempt: Callable[[Attempt], None] | None = None
    on_retry: Callable[[Deployment, UpstreamError], None] | None = None
    live: LiveStats = field(default_factory=LiveStats)
    fallback: FallbackPolicy = DEFAULT_FALLBACK

    @property
    def stats(self) -> StatsView:
        return self.live.view

    def options(self, role: str, deployment: Deployment) -> CallOptions:
        live = self.live
        name = deployment.name

        def on_retry(exc: UpstreamError) -> bool:
            """Every failed try feeds the breaker; no retry once the failure takes the deployment out."""
            if not live.failed_try(name, rate_limited_for=_rate_limited_for(exc)):
                return False
            if self.on_retry is not None:
                self.on_retry(deployment, exc)
            return True

        return CallOptions(
            deadline=self.deadline, request_id=self.request_id, role=role, clock=self.clock, on_retry=on_retry
        )

    def _gate(self, deployment: Deployment, role: Role) -> None:
        """Skip a deployment whose breaker is open (or whose one half-open probe is under way), or that cools
        down after a 429: no call is made, the skip is recorded (status `skipped`, the reason in `note`), and
        the caller falls over to the next deployment as after any upstream failure."""
        unavailable = self.live.unavailable(deployment.name)
        if unavailable is None:
            return
        attempt = Attempt(deployment, role, status="skipped", note=unavailable.reason)
        self.meta.attempts.append(attempt)
        if self.on_attempt is not None:
            self.on_attempt(attempt)
        raise DeploymentUnavailable(
            f"{deployment.name}: skipped ({unavailable.reason.replace('_', ' ')})",
            reason=unavailable.reason,
            retry_after=unavailable.retry_after_s,
            deployment=deployment.name,
        )

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def _finish(self, attempt: Attempt, error: BaseException | None = None) -> None:
        self.meta.attempts.append(attempt)
        self.live.finished(
            attempt.deployment.name,
            ok=attempt.status == "ok",
            latency_ms=attempt.latency_ms,
            ttft_ms=attempt.ttft_ms,
            rate_limited_for=_rate_limited_for(error),
            cancelled=attempt.status == "cancelled",
        )
        if self.on_attempt is not None:
            self.on_attempt(attempt)

    async def call(self, deployment: Deployment, request: ChatRequest, role: Role = "attempt") -> ChatResponse:
        """One non-streaming call, recorded whatever its outcome (a cancelled call is recorded as cancelled)."""
        self._gate(deployment, role)
        attempt = Attempt(deployment, role)
        started = self.clock()
        failure: BaseException | None = None
        self.live.started(deployment.name)
        try:
            options = self.options(role, deployment)
            response = await deployment.provider.complete(request, model=deployment.model, options=options)
            attempt.usage = response.usage or estimate_usage(request.body, estimate_completion(response.choices))
        except asyncio.CancelledError:
            attempt.status = "cancelled"
            attempt.usage = estimate_usage(request.body, 0)  # abandoned in flight: the prompt is billed
            raise
        except GatewayError as exc:
            failure = exc
            attempt.failed(exc)
            raise
        finally:
            attempt.latency_ms = (self.clock() - started) * 1000
            if attempt.status == "ok":
                attempt.ttft_ms = attempt.latency_ms  # a whole answer's first token is its last
            self._finish(attempt, failure)  # recorded complete: stats and hooks see usage and timing
        return response

    @asynccontextmanager
    async def open_stream(
        self, deployment: Deployment, request: ChatRequest, role: Role = "attempt"
    ) -> AsyncIterator[RecordedStream]:
        """Open a streaming call (sent, first chunk received). The attempt is recorded when the stream is
        exhausted, or when it is left early (then as cancelled: a loser, or a client that went away)."""
        self._gate(deployment, role)
        attempt = Attempt(deployment, role)
        started = self.clock()
        recorded: RecordedStream | None = None
        failure: list[BaseException] = []
        self.live.started(deployment.name)

        def finish() -> None:
            if recorded is not None or attempt.status == "cancelled":
                # what the upstream reported, else the prompt and what arrived (a stream cut or without usage)
                reported = recorded.usage if recorded is not None else None
                produced = recorded.produced_tokens if recorded is not None else 0
                attempt.usage = reported or estimate_usage(request.body, produced)
            attempt.latency_ms = (self.clock() - started) * 1000
            self._finish(attempt, failure[0] if failure else None)

        try:
            async with deployment.provider.stream(
                request, model=deployment.model, options=self.options(role, deployment)
            ) as upstream:
                attempt.ttft_ms = (self.clock() - started) * 1000
                recorded = RecordedStream(upstream, attempt, finish)
                yield recorded
        except asyncio.CancelledError:
            attempt.status = "cancelled"
            raise
        except GatewayError as exc:
            failure.append(exc)
            attempt.failed(exc)
            raise
        finally:
            if recorded is None or not recorded.finished:
                if recorded is not None and attempt.status == "ok":
                    attempt.status = "cancelled"  # left before the end
                finish()
            if recorded is not None:
                recorded.detach()


def _nothing() -> None:
    return None


class RecordedStream:
    """A provider stream that remembers usage and whether it reached its end."""

    __slots__ = ("_on_done", "_upstream", "attempt", "finish_reason", "finished", "produced_tokens")

    def __init__(self, upstream: ChunkStream, attempt: Attempt, on_done: Callable[[], None]) -> None:
        self._upstream = upstream
        self._on_done = on_done
        self.attempt = attempt
        self.finished = False
        self.finish_reason: str | None = None
        self.produced_tokens = 0  # the gateway's count of what arrived, for when the upstream reports none

    @property
    def deployment(self) -> Deployment:
        return self.attempt.deployment

    @property
    def usage(self) -> Usage | None:
        return self._upstream.usage

    def detach(self) -> None:
        """Forget the end callback: it refers back to this stream (a cycle only the garbage collector would free,
        with everything the request holds; per-request cycles cost more CPU than anything else here)."""
        self._on_done = _nothing

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        async for chunk in self._upstream:
            for choice in chunk.get("choices") or ():
                if choice.get("finish_reason") is not None:
                    self.finish_reason = choice["finish_reason"]
            self.produced_tokens += chunk_tokens(chunk)
            yield chunk
        self.finished = True
        self._on_done()  # recorded now, so metadata built at the end of the stream includes this call


def _rate_limited_for(error: BaseException | None) -> float | None:
    """How long an upstream 429 asks the deployment to rest (at least a second), or None for other failures."""
    if isinstance(error, UpstreamRateLimited):
        return error.retry_after or 1.0
    return None
