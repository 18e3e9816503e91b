"""The race engine under `race` (whole answers) and `race_stream` (streams), on the real mock provider: who
wins, what happens to the others (cancelled, or closed when they won in the same instant), refills after
failures and rejected answers, and that nothing is left running when a race is over."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core.errors import AllProvidersFailed
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.types import ChatRequest, ChatResponse, parse_chat_request
from gateway.providers.mock import MockModel, MockProvider
from strategies._fanout import race, race_stream
from strategies.base import StrategyContext, StrategyMeta

pytestmark = [pytest.mark.timeout(30), pytest.mark.virtual_time]


def pool() -> ProviderPool:
    provider = MockProvider(
        "m",
        {
            "fail": MockModel(failure_rate=1.0),
            "empty": MockModel(reply=""),
            "a": MockModel(reply="a says {prompt}"),
            "b": MockModel(reply="b says {prompt}"),
        },
    )
    return ProviderPool([Deployment(provider, m) for m in ("fail", "empty", "a", "b")])


def request(stream: bool = False) -> ChatRequest:
    return parse_chat_request({"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": stream})


def context() -> StrategyContext:
    clock = asyncio.get_running_loop().time  # virtual time
    return StrategyContext(meta=StrategyMeta("race"), deadline=clock() + 60, clock=clock)


def outcomes(ctx: StrategyContext) -> list[tuple[str, str]]:
    return [(a.deployment.name, a.status) for a in ctx.meta.attempts]


def only_me_running() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


def not_b(response: ChatResponse) -> str | None:
    return "b is not wanted" if response.content.startswith("b") else None


async def test_whole_race_refills_after_a_failure_and_a_rejected_answer() -> None:
    deployments, ctx = pool(), context()
    ranked = [deployments[f"m/{n}"] for n in ("fail", "b", "a")]
    winner, response = await race(ctx, ranked, request(), width=1, accept=not_b)
    assert (winner.name, response.content) == ("m/a", "a says hi")
    assert outcomes(ctx) == [("m/fail", "error"), ("m/b", "rejected"), ("m/a", "ok")]
    assert ctx.meta.attempts[1].note == "b is not wanted"
    assert ctx.meta.providers == ["m/a"]
    assert "hedged" not in ctx.meta.extra
    assert only_me_running()


async def test_whole_race_when_everything_fails_lists_every_failure() -> None:
    deployments, ctx = pool(), context()
    with pytest.raises(AllProvidersFailed) as caught:
        await race(ctx, [deployments["m/fail"], deployments["m/b"]], request(), width=2, accept=not_b)
    assert "m/fail" in caught.value.message
    assert "answer rejected: b is not wanted" in caught.value.message
    assert ctx.meta.served_by == []
    assert only_me_running()


async def test_stream_race_closes_a_second_racer_that_opened_in_the_same_instant() -> None:
    deployments, ctx = pool(), context()
    async with race_stream(ctx, [deployments["m/a"], deployments["m/b"]], request(True), width=2) as stream:
        assert only_me_running()  # the loser is closed before the winner is handed out
        [loser] = ctx.meta.attempts
        assert loser.status == "cancelled"
        text = "".join([c["choices"][0]["delta"].get("content") or "" async for c in stream if c["choices"]])
    winner = ctx.meta.served_by[0].name
    assert text == f"{winner[-1]} says hi"
    assert {a.deployment.name for a in ctx.meta.attempts} == {"m/a", "m/b"}
    assert [a.status for a in ctx.meta.attempts if a.deployment.name == winner] == ["ok"]


async def test_stream_race_moves_past_failures_and_empty_answers() -> None:
    deployments, ctx = pool(), context()
    ranked = [deployments[f"m/{n}"] for n in ("fail", "empty", "a")]
    async with race_stream(ctx, ranked, request(True), width=1) as stream:
        text = "".join([c["choices"][0]["delta"].get("content") or "" async for c in stream if c["choices"]])
    assert text == "a says hi"
    assert outcomes(ctx) == [("m/fail", "error"), ("m/empty", "rejected"), ("m/a", "ok")]
    assert only_me_running()
