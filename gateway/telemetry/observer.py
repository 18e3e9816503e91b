"""The request observer: what a request leaves behind for operators — the strategy span, the request and
attempt metrics — from typed values the pipeline hands over (never from rendered headers).

The pipeline calls `start` once per request, then exactly one of `done` or `failed`, and `attempt` for every
upstream call as it finishes. Metric labels come from the configuration only: a model name the gateway does not
serve is counted as `unknown`, so clients cannot grow `/metrics` by inventing names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gateway.core.errors import BudgetExceeded, GatewayError, LimitState, RateLimited, UpstreamError
from gateway.core.pool import Deployment
from gateway.core.stats import LiveStats
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.tracing import Tracing, fail

if TYPE_CHECKING:  # the records' shapes only: telemetry runs without the strategies package
    from strategies.base import Attempt, StrategyMeta

__all__ = ["UNKNOWN_MODEL", "RequestObserver"]

UNKNOWN_MODEL = "unknown"
_ATTEMPT_ERROR = {"ok": "", "rejected": "", "cancelled": "cancelled"}


class RequestObserver:
    def __init__(
        self, metrics: Metrics, tracing: Tracing, live: LiveStats, *, known_model: Callable[[str], bool]
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.live = live
        self._known = known_model

    def retarget(self, known_model: Callable[[str], bool]) -> None:
        """What the gateway serves changed (a configuration reload)."""
        self._known = known_model

    def model_label(self, model: str) -> str:
        return model if self._known(model) else UNKNOWN_MODEL

    def start(self, model: str, strategy: str, stream: bool) -> Any:
        """The strategy span (None when tracing is off); the calls made while it is current are its children."""
        if not self.tracing.enabled:
            return None
        return self.tracing.start_span(
            f"ultra.strategy {strategy}", {"ultra.strategy": strategy, "ultra.model": model, "ultra.stream": stream}
        )

    def done(
        self, span: Any, model: str, meta: StrategyMeta, cache: str, limits: Mapping[str, LimitState] | None
    ) -> None:
        strategy = meta.chosen_strategy or meta.strategy
        self.metrics.requests.inc((model, strategy, "200"))
        hedged = meta.extra.get("hedged")
        if hedged:
            self.metrics.hedges.inc((meta.strategy,), hedged)
        self.metrics.cache.inc((cache,))
        self.metrics.cost.inc((model,), meta.cost_usd)
        if span is None:
            return
        attributes: dict[str, Any] = {
            "ultra.cache": cache,
            "ultra.providers": ",".join(meta.providers),
            "ultra.cost_usd": meta.cost_usd,
            "ultra.calls": len(meta.attempts),
        }
        if meta.chosen_strategy:
            attributes["ultra.chosen_strategy"] = meta.chosen_strategy
        for dimension, state in (limits or {}).items():
            attributes[f"ultra.ratelimit_remaining_{dimension}"] = state.remaining
        span.set_attributes(attributes)  # one call: each set_attribute takes the span's lock
        span.end()

    def spent(self, key: str | None, tenant: str | None, model: str, cost_usd: float) -> None:
        """Upstream cost by key, tenant and model (key and tenant names come from the configuration or the admin
        API, never from a request)."""
        self.metrics.spend.inc((key or "", tenant or "", self.model_label(model)), cost_usd)

    def failed(self, span: Any, model: str, strategy: str, exc: BaseException) -> None:
        label = self.model_label(model)
        if isinstance(exc, GatewayError):
            status = str(exc.status)
        else:
            status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "500"
        self.metrics.requests.inc((label, strategy, status))
        if isinstance(exc, BudgetExceeded):
            self.metrics.budget_rejections.inc((exc.budget.scope, exc.budget.period))
        elif isinstance(exc, RateLimited):
            self.metrics.rate_limited.inc((label,))
        if span is None:
            return
        if isinstance(exc, GatewayError):
            fail(span, exc.code or type(exc).__name__, exc.message)
        elif isinstance(exc, asyncio.CancelledError):
            fail(span, "cancelled", "the client went away")
        else:
            fail(span, type(exc).__qualname__, "internal error")
        span.end()

    def attempt(self, attempt: Attempt) -> None:
        """Every upstream call, as the GenAI metrics and the provider-error and breaker series; a skipped
        deployment (no call made) only as a skip."""
        deployment = attempt.deployment
        if attempt.status == "skipped":
            self.metrics.skipped.inc((deployment.name, attempt.note or "unavailable"))
            return
        provider = deployment.provider
        error = _ATTEMPT_ERROR.get(attempt.status)
        if error is None:
            error = attempt.error_type or "error"
        labels = ("chat", provider.system, deployment.model, provider.name)
        self.metrics.duration.observe((*labels, error), attempt.latency_ms / 1000)
        if attempt.usage is not None:
            self.metrics.tokens.observe((*labels, "input"), attempt.usage.prompt_tokens)
            self.metrics.tokens.observe((*labels, "output"), attempt.usage.completion_tokens)
        if attempt.status == "error":
            self.metrics.provider_errors.inc((deployment.name, attempt.error_type or "error", "no"))
        self.metrics.breaker.set((deployment.name,), 0.0 if self.live.breaker(deployment.name) == "closed" else 1.0)

    def retried(self, deployment: Deployment, error: UpstreamError) -> None:
        """A failed try the retry layer retries (or would have, had the deployment stayed in rotation)."""
        self.metrics.provider_errors.inc((deployment.name, error.kind, "yes"))

    def transition(self, deployment: str, state: str) -> None:
        self.metrics.breaker_transitions.inc((deployment, state))
        self.metrics.breaker.set((deployment,), 0.0 if state == "closed" else 1.0)
