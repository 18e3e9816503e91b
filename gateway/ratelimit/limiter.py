"""`RateLimiter`: turns a request (its key, its model, its body) into checks, asks the backend, and settles the
tokens afterwards. Fail-open or fail-closed when the shared backend is down is decided here.

Fail-open does not mean unlimited: the decision falls back to a local in-process limiter with the same limits
(per replica), so a Redis outage bounds the overrun to the number of replicas instead of removing limits. The
local limiter shadows the shared one while Redis is up (every admission and settlement of this replica is
charged to both), so at fail-over it already knows what this replica used: one replica alone never admits
more than the limit, whether Redis is up, down or in between.
Fail-closed answers 503 with `retry-after` until Redis is back.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.core.batch import Batcher
from gateway.core.errors import LimitState, ServiceUnavailable
from gateway.core.types import random_hex
from gateway.ratelimit.base import LimiterBackend, Settlement
from gateway.ratelimit.memory import MemoryLimiter
from gateway.ratelimit.policy import Check, Decision, LimitRule, estimate_tokens, per_minute, token_cost

__all__ = ["RateLimiter", "Ticket", "key_rule"]

log = logging.getLogger("ultra_gateway")

SETTLE_BATCH_S = 0.005


def key_rule(name: str, *, rpm: int | None, tpm: int | None) -> LimitRule | None:
    """The limits of one API key (by name: the secret never names state)."""
    if rpm is None and tpm is None:
        return None
    return LimitRule(
        f"key:{name}",
        f"key '{name}'",
        per_minute(rpm) if rpm is not None else None,
        per_minute(tpm) if tpm is not None else None,
    )


@dataclass(slots=True)
class Ticket:
    """An admitted request: where its limits stand, and what settlement needs. Settle exactly once."""

    decision: Decision
    backend: LimiterBackend | None = None
    token_checks: list[Check] = field(default_factory=list)
    reservation: str = ""
    reserved: int = 0
    settled: bool = False
    shadow: LimiterBackend | None = None  # the local limiter, charged alongside the shared backend

    @property
    def limits(self) -> dict[str, LimitState]:
        return self.decision.limits()


class RateLimiter:
    def __init__(
        self,
        backend: LimiterBackend,
        *,
        global_rule: LimitRule | None = None,
        model_rules: Mapping[str, LimitRule] | None = None,
        fail_open: bool = True,
        default_output_tokens: int = 1024,
        reservation_ttl_s: float = 900.0,
        fallback: LimiterBackend | None = None,
    ) -> None:
        self.backend = backend
        self.global_rule = global_rule
        self.model_rules = dict(model_rules or {})
        self.fail_open = fail_open
        self.default_output_tokens = default_output_tokens
        self.reservation_ms = int(reservation_ttl_s * 1000)
        # The local fallback only makes sense in front of a shared backend.
        self.fallback = fallback if fallback is not None else (MemoryLimiter() if backend.name != "memory" else None)
        self._settlements: Batcher[tuple[LimiterBackend, Settlement]] = Batcher(
            self._settle_many, delay_s=SETTLE_BATCH_S
        )

    def rules(self, key: LimitRule | None, model: str) -> list[LimitRule]:
        rules = [key] if key is not None else []
        for pattern, rule in self.model_rules.items():
            if fnmatch.fnmatchcase(model, pattern):
                rules.append(rule)
                break  # first matching pattern wins, in config order
        if self.global_rule is not None:
            rules.append(self.global_rule)
        return rules

    def _checks(self, rules: Sequence[LimitRule], body: Mapping[str, Any]) -> tuple[list[Check], list[Check], int]:
        token_rates = [r.tokens for r in rules if r.tokens is not None]
        cost = 0
        if token_rates:
            prompt, total = estimate_tokens(body, default_output_tokens=self.default_output_tokens)
            cost = token_cost(prompt, total, token_rates)
        checks: list[Check] = []
        tokens: list[Check] = []
        for rule in rules:
            if rule.requests is not None:
                checks.append(Check(rule, "requests", rule.requests, 1))
            if rule.tokens is not None:
                check = Check(rule, "tokens", rule.tokens, cost)
                checks.append(check)
                tokens.append(check)
        return checks, tokens, cost

    async def admit(self, *, key: LimitRule | None, model: str, body: Mapping[str, Any]) -> Ticket:
        """Admit or raise: RateLimited (429, with headers), InvalidRequest (a prompt no limit can ever admit),
        ServiceUnavailable (backend down and fail-closed)."""
        rules = self.rules(key, model)
        if not rules:
            return Ticket(Decision())
        checks, tokens, cost = self._checks(rules, body)
        reservation = random_hex(32)
        reserve_ms = self.reservation_ms if tokens else 0
        backend = self.backend
        degraded = False
        try:
            outcomes = await backend.admit(checks, reservation=reservation, reserved=cost, reserve_ms=reserve_ms)
        except ServiceUnavailable as exc:
            if not self.fail_open or self.fallback is None:
                raise ServiceUnavailable(
                    "Rate limits cannot be checked right now; please retry shortly.", retry_after=exc.retry_after
                ) from None
            backend, degraded = self.fallback, True
            outcomes = await backend.admit(checks, reservation=reservation, reserved=cost, reserve_ms=reserve_ms)
        decision = Decision(outcomes, degraded=degraded)
        if not decision.allowed:
            raise decision.error()
        shadow = None
        if not degraded and self.fallback is not None:
            # This replica's share, kept locally, so a fail-over starts from it rather than from a full limit.
            await self.fallback.admit(checks, reservation=reservation, reserved=cost, reserve_ms=reserve_ms)
            shadow = self.fallback
        return Ticket(decision, backend, tokens, reservation, cost, shadow=shadow)

    def settle_soon(self, ticket: Ticket, actual_tokens: int | None) -> None:
        """`settle`, in the background and batched (gateway/core/batch.py): the settlements queued within
        `SETTLE_BATCH_S` go to each backend together, one Redis round trip for all of them. Meanwhile the
        estimate stays charged, as it was while the request ran."""
        for queued in self._settlement(ticket, actual_tokens):
            self._settlements.add(queued)

    @staticmethod
    def _settlement(ticket: Ticket, actual_tokens: int | None) -> list[tuple[LimiterBackend, Settlement]]:
        """What settling `ticket` means, once: nothing if it was settled already or there is nothing to settle."""
        if ticket.settled:
            return []
        ticket.settled = True
        if ticket.backend is None or not ticket.token_checks or actual_tokens is None:
            return []
        settlement = Settlement(ticket.token_checks, ticket.reservation, actual_tokens)
        if ticket.shadow is None:
            return [(ticket.backend, settlement)]
        return [(ticket.backend, settlement), (ticket.shadow, settlement)]

    async def _settle_many(self, queued: list[tuple[LimiterBackend, Settlement]]) -> None:
        by_backend: dict[int, tuple[LimiterBackend, list[Settlement]]] = {}
        for backend, settlement in queued:  # the shared backend, or the local fallback while it was down
            by_backend.setdefault(id(backend), (backend, []))[1].append(settlement)
        for backend, settlements in by_backend.values():
            try:
                await backend.settle_many(settlements)
            except ServiceUnavailable:
                log.debug("token settlement skipped: the limiter backend is unavailable")

    @property
    def busy(self) -> bool:
        """Settlements queued or in flight (tests and shutdown wait for them)."""
        return self._settlements.busy

    async def drain(self, timeout_s: float = 2.0) -> None:
        await self._settlements.drain(timeout_s)

    async def settle(self, ticket: Ticket, actual_tokens: int | None) -> None:
        """Charge real usage instead of the estimate, now. None: usage unknown (e.g. the client left mid-stream),
        so the reservation stays charged (conservative). Never raises: settlement runs after the
        answer, and a lost settlement only leaves the estimate charged until the record expires."""
        if queued := self._settlement(ticket, actual_tokens):
            await self._settle_many(queued)

    async def ping(self) -> bool:
        return await self.backend.ping()

    async def aclose(self) -> None:
        await self.drain()
        await self.backend.aclose()
        if self.fallback is not None:
            await self.fallback.aclose()
