"""The fallback policy is asked by every chain, cascade and race: with the default policy an upstream 503 moves
on to the next deployment; with a policy under which a 503 is final, the same 503 reaches the caller as is (not
folded into "all providers failed"), whole and streamed, from every strategy that walks deployments."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from gateway.core.errors import (
    AllProvidersFailed,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.types import parse_chat_request
from gateway.providers.mock import MockModel, MockProvider
from strategies import build_strategies
from strategies._fallback import DEFAULT_FALLBACK, FallbackPolicy
from strategies.base import Strategy, StrategyContext, StrategyMeta
from strategies.direct import Direct

pytestmark = [pytest.mark.timeout(30), pytest.mark.virtual_time]

STRICT = FallbackPolicy(final=(UpstreamStatusError,))

ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "ultra-chain": ("waterfall", {"chain": ["m/fail", "m/ok"]}),
    "ultra-cheap": ("cost", {"chain": ["m/fail", "m/ok"]}),
    "ultra-judged": ("cost", {"chain": ["m/ok", "m/ok2"], "judge": "m/fail"}),  # the last answer is not judged
    "ultra-race": ("parallel", {"candidates": ["m/fail", "m/ok"], "initial_width": 1, "max_width": 1}),
    "ultra-moa": ("simple", {"candidates": ["m/ok", "m/ok2"], "lead": "m/fail"}),
}


def pool() -> ProviderPool:
    provider = MockProvider(
        "m", {"fail": MockModel(failure_rate=1.0), "ok": MockModel(reply="ok"), "ok2": MockModel(reply="ok too")}
    )
    return ProviderPool([Deployment(provider, "fail"), Deployment(provider, "ok"), Deployment(provider, "ok2")])


def strategies(deployments: ProviderPool) -> dict[str, Strategy]:
    built = build_strategies(ALIASES)
    built["direct"] = Direct([deployments["m/fail"], deployments["m/ok"]])
    return built


NAMES = [*ALIASES, "direct"]


def context(name: str, fallback: FallbackPolicy = DEFAULT_FALLBACK) -> StrategyContext:
    clock = asyncio.get_running_loop().time  # virtual time
    return StrategyContext(meta=StrategyMeta(name), deadline=clock() + 60, clock=clock, fallback=fallback)


async def run(strategy: Strategy, deployments: ProviderPool, ctx: StrategyContext, stream: bool) -> str:
    request = parse_chat_request({"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    if not stream:
        return (await strategy.complete(request, deployments, ctx)).response.content
    manager: AbstractAsyncContextManager[Any] = strategy.stream(request, deployments, ctx)
    async with manager as chunks:
        return "".join([c["choices"][0]["delta"].get("content") or "" async for c in chunks if c["choices"]])


def test_the_default_policy() -> None:
    assert not DEFAULT_FALLBACK.falls_over(UpstreamBadRequest("bad", upstream_status=400))
    assert DEFAULT_FALLBACK.falls_over(UpstreamStatusError("down", upstream_status=503))
    assert DEFAULT_FALLBACK.falls_over(UpstreamTimeout("slow"))
    assert DEFAULT_FALLBACK.falls_over(AllProvidersFailed([UpstreamError("x")]))
    assert not DEFAULT_FALLBACK.falls_over(ValueError("a bug"))
    assert not STRICT.falls_over(UpstreamStatusError("down", upstream_status=503))
    assert STRICT.falls_over(UpstreamTimeout("slow"))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("name", NAMES)
async def test_default_policy_falls_over_a_503(name: str, stream: bool) -> None:
    deployments = pool()
    ctx = context(name)
    assert (await run(strategies(deployments)[name], deployments, ctx, stream)).startswith("ok")
    assert ("m/fail", "error") in [(a.deployment.name, a.status) for a in ctx.meta.attempts]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("name", NAMES)
async def test_a_final_error_is_not_fallen_over(name: str, stream: bool) -> None:
    deployments = pool()
    ctx = context(name, STRICT)
    with pytest.raises(UpstreamStatusError) as caught:
        await run(strategies(deployments)[name], deployments, ctx, stream)
    assert caught.value.upstream_status == 503
    assert caught.value.deployment == "m/fail"
    assert [a.deployment.name for a in ctx.meta.attempts if a.status != "ok"] == ["m/fail"]
