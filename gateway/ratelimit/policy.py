"""Which limits apply to a request, what they cost, and what the client is told about them.

A request is checked against up to three scopes at once — its API key, its model or alias (a configured glob),
and the whole gateway — each with a `requests` and a `tokens` dimension per minute. All of them are checked and
committed together (all or none), so a request refused on tokens does not burn a request slot.

Tokens are reserved from an estimate before the call and settled with real usage after it
(docs/design.md, rate limits): `estimate_tokens` is deliberately pessimistic (bytes/3 for the prompt plus
the output cap), settlement refunds the difference.

What the client is told is typed (`LimitState` per dimension: the binding limit, the one with the least
remaining); the HTTP edge renders it as OpenAI's `x-ratelimit-*` headers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from gateway.core.errors import InvalidRequest, LimitState, RateLimited, format_duration
from gateway.ratelimit._gcra import Rate

__all__ = [
    "Check",
    "Decision",
    "Dimension",
    "LimitRule",
    "Outcome",
    "Rate",
    "estimate_tokens",
    "format_duration",
    "per_minute",
]

Dimension = Literal["requests", "tokens"]
MINUTE_US = 60_000_000


def per_minute(limit: int, *, burst: int | None = None) -> Rate:
    return Rate(limit, MINUTE_US, burst or limit)


@dataclass(frozen=True, slots=True)
class LimitRule:
    """The limits of one scope. `scope` names the state (`key:team-a`, `model:openai/*`, `global`); `label` is
    how a client-facing message refers to it (never a secret: key names, patterns)."""

    scope: str
    label: str
    requests: Rate | None = None
    tokens: Rate | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """One dimension of one rule, with this request's cost in it."""

    rule: LimitRule
    dimension: Dimension
    rate: Rate
    cost: int

    @property
    def state(self) -> str:
        return f"{self.rule.scope}:{self.dimension}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A backend's answer for one check."""

    check: Check
    allowed: bool
    remaining: int
    reset_us: int
    retry_us: int


@dataclass(slots=True)
class Decision:
    """The verdict over every check: admitted only if all fit. `degraded` when the shared backend was
    unavailable and a local fallback decided (fail-open)."""

    outcomes: list[Outcome] = field(default_factory=list)
    degraded: bool = False

    @property
    def allowed(self) -> bool:
        return all(o.allowed for o in self.outcomes)

    @property
    def denied(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.allowed]

    @property
    def retry_after_s(self) -> float:
        return max((o.retry_us for o in self.denied), default=0) / 1_000_000

    def limits(self) -> dict[str, LimitState]:
        """Each dimension's binding check (the one with the least remaining), as the client is told it."""
        out: dict[str, LimitState] = {}
        for dimension in ("requests", "tokens"):
            mine = [o for o in self.outcomes if o.check.dimension == dimension]
            if not mine:
                continue
            binding = min(mine, key=lambda o: (o.allowed, o.remaining, -o.reset_us))
            out[dimension] = LimitState(binding.check.rate.limit, binding.remaining, binding.reset_us / 1_000_000)
        return out

    def error(self) -> RateLimited:
        """The 429 for a refused request: OpenAI body, `retry-after`/`retry-after-ms` and the limit headers."""
        worst = max(self.denied, key=lambda o: o.retry_us)
        check = worst.check
        unit = "RPM" if check.dimension == "requests" else "TPM"
        wait_s = self.retry_after_s
        message = (
            f"Rate limit reached for {check.rule.label} on {check.dimension} per min ({unit}): "
            f"Limit {check.rate.limit}, Remaining {worst.remaining}, Requested {check.cost}. "
            f"Please try again in {format_duration(wait_s)}."
        )
        return RateLimited(message, retry_after=wait_s, limits=self.limits())


def _output_cap(body: Mapping[str, Any], default_output_tokens: int) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default_output_tokens


def estimate_tokens(body: Mapping[str, Any], *, default_output_tokens: int = 1024) -> tuple[int, int]:
    """(prompt estimate, total estimate) for a chat request body, before the call.

    Prompt: one token per 3 bytes of the messages and tools as JSON (conservative for English and code; no
    tokenizer dependency). Output: the request's cap, else `default_output_tokens`, times `n`.
    """
    material = [body.get("messages"), body.get("tools"), body.get("response_format")]
    prompt = len(orjson.dumps(material)) // 3 + 1
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    return prompt, prompt + _output_cap(body, default_output_tokens) * choices


def token_cost(prompt: int, total: int, checks: Sequence[Rate]) -> int:
    """What to reserve: the estimate, capped at the smallest token burst (so a large default output cap does not
    make a request impossible; settlement charges the real usage). A prompt that alone exceeds a burst can never
    be admitted: that is a 400, not a 429 the client would retry forever."""
    if not checks:
        return total
    smallest = min(rate.burst for rate in checks)
    if prompt > smallest:
        raise InvalidRequest(
            f"This request needs about {prompt} prompt tokens, more than the token limit per minute "
            f"({smallest}) allows at once; shorten the messages.",
            param="messages",
            code="tokens_exceed_limit",
        )
    return min(total, smallest)
