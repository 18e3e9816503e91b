"""Model groups: one public model name spread over several deployments of the same model (LiteLLM's
`model_name` groups). Each request picks a first deployment by the group's routing policy, and falls over to the
group's other deployments (in the policy's order) when it fails, through the same chain as a direct request:
the fallback policy decides what is fallen over, and deployments whose breaker is open are skipped.

Routing policies:

- `weighted`: a random draw by `weights` (equal weights when none are given) with the request's RNG; the
  remaining deployments follow in a weighted random order. A weight of 0 makes a deployment a fallback only.
- `least_in_flight`: the deployment with the fewest calls in flight in this process first (ties broken at
  random, so an idle group still spreads its load).
- `lowest_latency`: the lowest live EWMA latency first (time to first token for streams); deployments with no
  timings yet go first, in random order, so each is measured before it is judged.

Deployments that cannot serve the request (tools, `n`, streaming) are left out while any other can; unhealthy
ones (breaker open, at their concurrency limit) go last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.core.pool import Deployment, ProviderPool
from gateway.core.types import ChatRequest
from strategies._common import Kind, Options, resolve
from strategies._ranking import eligible, healthy_first
from strategies.base import Strategy, StrategyContext, StrategyResult
from strategies.direct import ChainStream, open_first, run_chain

__all__ = ["KIND", "ROUTING", "Group", "GroupOptions"]

Routing = Literal["weighted", "least_in_flight", "lowest_latency"]
ROUTING: tuple[str, ...] = ("weighted", "least_in_flight", "lowest_latency")


class GroupOptions(Options):
    deployments: Annotated[list[str], Field(min_length=1, description="The deployments behind the name.")]
    routing: Routing = Field("weighted", description="How the first deployment is chosen.")
    weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        None, description="weighted: one weight per deployment (default: equal)."
    )

    @model_validator(mode="after")
    def _weights(self) -> GroupOptions:
        if len(set(self.deployments)) != len(self.deployments):
            raise ValueError("deployments must be distinct")
        if self.weights is None:
            return self
        if self.routing != "weighted":
            raise ValueError("weights only apply to routing: weighted")
        if len(self.weights) != len(self.deployments):
            raise ValueError(
                f"weights has {len(self.weights)} entries for {len(self.deployments)} deployments (one each)"
            )
        if not any(w > 0 for w in self.weights):
            raise ValueError("at least one weight must be above 0")
        return self


class Group:
    """The strategy behind a model group's public name."""

    def __init__(self, name: str, options: GroupOptions) -> None:
        self.name = name
        self.options = options
        names = options.deployments
        self._weights = dict(zip(names, options.weights or [1.0] * len(names), strict=True))

    def order(self, pool: ProviderPool, request: ChatRequest, ctx: StrategyContext) -> list[Deployment]:
        """The deployments in the order this request tries them."""
        members = resolve(pool, self.options.deployments)
        members = eligible(members, request) or members
        rng, stats = ctx.rng, ctx.stats
        routing = self.options.routing
        if routing == "weighted":
            # weighted random order without replacement: key u^(1/w), largest first (zero weights last)
            keys = {}
            for d in members:
                weight = self._weights[d.name]
                keys[d.name] = rng.random() ** (1.0 / weight) if weight > 0 else -1.0
            ranked = sorted(members, key=lambda d: -keys[d.name])
        elif routing == "least_in_flight":
            ties = {d.name: rng.random() for d in members}
            ranked = sorted(members, key=lambda d: (stats.get(d.name).in_flight, ties[d.name]))
        else:
            ties = {d.name: rng.random() for d in members}

            def latency(d: Deployment) -> tuple[int, float, float]:
                s = stats.get(d.name)
                value = s.ttft_ms if request.stream else s.latency_ms
                return (0, 0.0, ties[d.name]) if value is None else (1, value, ties[d.name])

            ranked = sorted(members, key=latency)
        return healthy_first(ranked, stats)

    async def complete(self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext) -> StrategyResult:
        ctx.meta.extra["routing"] = self.options.routing
        return await run_chain(self.order(pool, request, ctx), request, ctx)

    @asynccontextmanager
    async def stream(
        self, request: ChatRequest, pool: ProviderPool, ctx: StrategyContext
    ) -> AsyncIterator[ChainStream]:
        ctx.meta.extra["routing"] = self.options.routing
        async with open_first(self.order(pool, request, ctx), request, ctx) as opened:
            yield ChainStream(opened, ctx.meta)


def _build(alias: str, options: GroupOptions, arms: Mapping[str, Strategy]) -> Strategy:
    return Group(alias, options)


KIND = Kind(GroupOptions, _build, builtin=False)
"""Not a built-in alias (a group needs its deployments) and not an arm adaptive chooses among."""
