"""`ultra-adaptive`: chooses a strategy per request and learns which works best per kind of request.

Context bucket = prompt size (short/long) x tools x stream x task hint (code, math or chat, from the last user
message). The `priority` hint (cost, quality or speed) picks directly. Otherwise arms that do not fit are
removed (tools: no synthesis strategies, since synthesised text cannot stand in for tool calls; high in-flight
load or open breakers: no fan-out strategies), and Thompson sampling over Beta posteriors per bucket picks one
(each sample drawn from the posterior narrowed by `exploration`: measured on the simulated fleet, the posterior's
own spread kept trying clearly worse arms on one request in ten long after they were known to be worse).
Each outcome is rewarded from what actually happened: 0 on failure, else
w_q·q - w_c·cost/(cost+cost_scale) - w_l·latency/(latency+latency_scale_ms), clipped to 0-1, where q is the
answer's graded quality: a score reported for the request (`feedback(request_id, score)`, which
`POST /v1/feedback` calls) or, on a sampled share of requests, a judge deployment's score. Until the first
graded outcome arrives, q is the configured quality prior of the deployments that served; from then on only
graded outcomes (and failures) update the posteriors. The last `pending` requests are remembered
(request id → bucket, arm, cost and latency penalties) so a score can arrive after the answer.
The metadata says what was chosen and why."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo

from gateway.core.errors import UpstreamError
from gateway.core.pool import ProviderPool
from gateway.core.types import ChatRequest, text_of
from strategies._common import Kind, Options, resolve
from strategies._judge import judge_score
from strategies.base import Strategy, StrategyContext, StrategyMeta, StrategyResult, StrategyStream

__all__ = ["KIND", "Adaptive", "AdaptiveOptions"]

_CODE = re.compile(r"```|\bdef |\bclass |\bfunction\b|\bcompile|\bstack trace|\bbug\b|\bcode\b", re.I)
_MATH = re.compile(r"\d\s*[-+*/^=]\s*\d|\bsolve\b|\bequation|\bintegral|\bprove\b|\bprobability", re.I)
_DEFAULT_ARMS: tuple[str, ...] = ("balanced", "cost", "quality", "speed", "parallel")
_FANOUT: frozenset[str] = frozenset({"simple", "quality", "parallel"})
_SYNTHESIS: frozenset[str] = frozenset({"simple", "quality"})


class RewardWeights(Options):
    quality: float = 1.0
    cost: float = 0.2
    latency: float = 0.1


def _known_arm(arm: str, info: ValidationInfo) -> str:
    """An arm is any kind in the registry that does not itself choose among arms (the registry passes their
    names as validation context)."""
    known = (info.context or {}).get("arms")
    if known is not None and arm not in known:
        raise ValueError(f"unknown arm {arm!r} (one of: {', '.join(known)})")
    return arm


Arm = Annotated[str, AfterValidator(_known_arm)]


class AdaptiveOptions(Options):
    arms: list[Arm] = Field(default_factory=lambda: list(_DEFAULT_ARMS))
    reward: RewardWeights = Field(default_factory=RewardWeights)
    cost_scale_usd: float = Field(0.001, gt=0, description="Cost at which the cost penalty is half its weight.")
    latency_scale_ms: float = Field(2000.0, gt=0, description="Latency at which the latency penalty is half.")
    long_prompt_chars: Annotated[int, Field(ge=1)] = 4000
    busy_in_flight: Annotated[int, Field(ge=1)] = 64
    exploration: float = Field(
        0.25, gt=0, le=4, description="Spread of the Thompson samples (1: the posterior's own; smaller exploits more)."
    )
    judge: str | None = Field(None, description="A deployment that grades a sampled share of answers 0-10.")
    judge_sample: float = Field(0.0, ge=0, le=1, description="Share of answers the judge grades.")
    pending: Annotated[int, Field(ge=1)] = Field(10_000, description="Recent requests a score may still arrive for.")


class Adaptive:
    def __init__(self, name: str, options: AdaptiveOptions, arms: Mapping[str, Strategy]) -> None:
        self.name = name
        self.options = options
        self.arms: dict[str, Strategy] = {arm: arms[arm] for arm in options.arms}
        self.posteriors: dict[tuple[str, str], list[float]] = {}  # (bucket, arm) → [alpha, beta]
        self.pending: OrderedDict[str, tuple[str, str, float]] = OrderedDict()  # id → (bucket, arm, penalty)
        self.graded = False  # a graded outcome has arrived: the quality prior no longer rewards

    def bucket(self, request: ChatRequest) -> str:
        last = next((text_of(m.get("content")) for m in reversed(request.messages) if m.get("role") == "user"), "")
        size = sum(len(text_of(m.get("content"))) for m in request.messages)
        task = "code" if _CODE.search(last) else "math" if _MATH.search(last) else "chat"
        return "/".join(
            [
                "long" if size > self.options.long_prompt_chars else "short",
                "tools" if request.has_tools else "text",
                "stream" if request.stream else "whole",
                task,
            ]
        )

    def choose(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> tuple[str, str, str]:
        bucket = self.bucket(request)
        priority = ctx.hints.get("priority", "").strip().lower()
        if priority in ("cost", "quality", "speed") and priority in self.arms:
            return priority, bucket, f"priority: {priority}"
        candidates = list(self.arms)
        why = []
        if request.has_tools:
            candidates = [a for a in candidates if a not in _SYNTHESIS] or candidates
            why.append("tools: no synthesis")
        load = sum(ctx.stats.get(name).in_flight for name in pool)
        unhealthy = sum(1 for name in pool if not ctx.stats.available(name))
        if load >= self.options.busy_in_flight or unhealthy * 2 > len(pool):
            candidates = [a for a in candidates if a not in _FANOUT] or candidates
            why.append(f"load {load} in flight, {unhealthy} breakers open: no fan-out")
        samples = {}
        for arm in candidates:
            alpha, beta = self.posteriors.get((bucket, arm), [1.0, 1.0])
            spread = self.options.exploration  # < 1 narrows the posterior: fewer draws on arms that look worse
            samples[arm] = ctx.rng.betavariate(alpha / spread, beta / spread)
        arm = max(samples, key=lambda a: samples[a])
        alpha, beta = self.posteriors.get((bucket, arm), [1.0, 1.0])
        why.append(f"Thompson sample {samples[arm]:.2f} (posterior mean {alpha / (alpha + beta):.2f}) in {bucket}")
        return arm, bucket, "; ".join(why)

    def penalty(self, meta: StrategyMeta, elapsed_ms: float) -> float:
        w = self.options.reward
        cost = meta.cost_usd / (meta.cost_usd + self.options.cost_scale_usd)
        latency = elapsed_ms / (elapsed_ms + self.options.latency_scale_ms)
        return w.cost * cost + w.latency * latency

    def reward(self, meta: StrategyMeta, ok: bool, elapsed_ms: float, quality: float | None = None) -> float:
        if not ok or not meta.served_by:
            return 0.0
        if quality is None:
            quality = sum(d.quality for d in meta.served_by) / len(meta.served_by)
        return min(1.0, max(0.0, self.options.reward.quality * quality - self.penalty(meta, elapsed_ms)))

    def feedback(self, request_id: str, score: float) -> bool:
        """A graded outcome (0-1) for a recent request of this alias; False when the id is not (or no longer)
        known here."""
        entry = self.pending.pop(request_id, None)
        if entry is None:
            return False
        bucket, arm, penalty = entry
        self.graded = True
        quality = min(1.0, max(0.0, score))
        self.update(bucket, arm, min(1.0, max(0.0, self.options.reward.quality * quality - penalty)))
        return True

    def _settle(
        self, ctx: StrategyContext, bucket: str, arm: str, ok: bool, elapsed_ms: float, *, judged: bool = False
    ) -> None:
        """After a request: failures score 0 at once; a success waits for its grade once grades flow (and is
        rewarded on the prior until then, unless the judge is about to grade it)."""
        if not ok or not ctx.meta.served_by:
            self.update(bucket, arm, 0.0)
            return
        if not self.graded and not judged:
            self.update(bucket, arm, self.reward(ctx.meta, True, elapsed_ms))
        if ctx.request_id:
            self.pending[ctx.request_id] = (bucket, arm, self.penalty(ctx.meta, elapsed_ms))
            while len(self.pending) > self.options.pending:
                self.pending.popitem(last=False)

    async def _grade(
        self, request: ChatRequest, result: StrategyResult, pool: ProviderPool, ctx: StrategyContext
    ) -> None:
        """The judge's score is the outcome."""
        judge = resolve(pool, [self.options.judge])[0] if self.options.judge is not None else None
        if judge is None:
            return
        try:
            score = await judge_score(ctx, judge, request, result.response)
        except UpstreamError as exc:
            if not ctx.fallback.falls_over(exc):
                raise
            return
        if score is not None:
            self.feedback(ctx.request_id, score / 10)

    def _judged(self, ctx: StrategyContext) -> bool:
        """Whether the judge grades this request's answer (a sampled share of them)."""
        if self.options.judge is None or not ctx.request_id:
            return False
        return ctx.rng.random() < self.options.judge_sample

    def update(self, bucket: str, arm: str, reward: float) -> None:
        posterior = self.posteriors.setdefault((bucket, arm), [1.0, 1.0])
        posterior[0] += reward
        posterior[1] += 1.0 - reward

    def _record(self, meta: StrategyMeta, arm: str, bucket: str, reason: str) -> None:
        meta.chosen_strategy = arm
        meta.reason = reason
        meta.extra["bucket"] = bucket

    async def complete(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> StrategyResult:
        arm, bucket, reason = self.choose(request, pool, ctx)
        self._record(ctx.meta, arm, bucket, reason)
        started = ctx.clock()
        try:
            result = await self.arms[arm].complete(request, pool, ctx)
        except BaseException:
            self.update(bucket, arm, 0.0)
            raise
        judged = self._judged(ctx)
        self._settle(ctx, bucket, arm, True, (ctx.clock() - started) * 1000, judged=judged)
        if judged:
            await self._grade(request, result, pool, ctx)
        return result

    @asynccontextmanager
    async def stream(
        self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext
    ) -> AsyncIterator[StrategyStream]:
        arm, bucket, reason = self.choose(request, pool, ctx)
        self._record(ctx.meta, arm, bucket, reason)
        started = ctx.clock()
        ok = False
        try:
            async with self.arms[arm].stream(request, pool, ctx) as inner:
                yield inner
                ok = all(a.status != "cancelled" for a in ctx.meta.attempts if a.deployment in ctx.meta.served_by)
        finally:
            self._settle(ctx, bucket, arm, ok, (ctx.clock() - started) * 1000)


def _build(alias: str, options: AdaptiveOptions, arms: Mapping[str, Strategy]) -> Strategy:
    return Adaptive(alias, options, arms)


KIND = Kind(AdaptiveOptions, _build, takes_arms=True)
