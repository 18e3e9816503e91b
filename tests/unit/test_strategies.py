"""Strategies on the real mock adapter with scripted profiles (latency, failure, empty answers, refusals), run
through the service pipeline in-process: which deployments were called, in what order, which were cancelled,
what the client got and what the metadata says."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from gateway.builder import build_gateway
from gateway.config import ConfigError, parse_settings
from gateway.core.errors import AllProvidersFailed, UpstreamError
from gateway.core.stats import LiveStats
from gateway.core.types import parse_chat_request
from gateway.pipeline import Caller
from gateway.service import Gateway
from gateway.settings import Settings
from strategies._ranking import by_speed
from strategies.adaptive import Adaptive

pytestmark = [pytest.mark.timeout(30), pytest.mark.virtual_time]

# Prices are per million tokens (input, output); quality is the operator's prior.
FLEET = """
providers:
  - name: m
    kind: mock
    models:
      - {id: fail, failure_rate: 1.0, input_cost_per_mtok: 0.1,
         output_cost_per_mtok: 0.1, quality: 0.5}
      - {id: empty, reply: "", input_cost_per_mtok: 0.2,
         output_cost_per_mtok: 0.2, quality: 0.55}
      - {id: refuse, reply: "I'm sorry, I can't help with that.", input_cost_per_mtok: 0.3,
         output_cost_per_mtok: 0.3, quality: 0.6}
      - {id: fast, latency_ms: 5, reply: "fast says {prompt}", input_cost_per_mtok: 1,
         output_cost_per_mtok: 1, quality: 0.7}
      - {id: slow, latency_ms: 400, reply: "slow says {prompt}", input_cost_per_mtok: 2,
         output_cost_per_mtok: 2, quality: 0.8}
      - {id: wise, latency_ms: 20, reply: "wise on [{system}] {prompt}", input_cost_per_mtok: 3,
         output_cost_per_mtok: 3, quality: 0.95}
cache: {enabled: false}
rate_limits: {enabled: false}
strategies:
  ultra-water: {kind: waterfall, chain: [m/fail, m/empty, m/refuse, m/fast]}
  ultra-cheap: {kind: cost, chain: [m/empty, m/refuse, m/fast, m/wise], judge: null}
  ultra-race: {kind: parallel, candidates: [m/fast, m/slow], initial_width: 2, max_width: 2}
  ultra-moa: {kind: simple, candidates: [m/fast, m/slow, m/fail], lead: m/wise}
  ultra-moa-lone: {kind: simple, candidates: [m/fast, m/fail], lead: m/wise}
  ultra-hedge: {kind: speed, candidates: [m/slow, m/fast], hedge_after_ms: 50, max_hedge_share: 1.0}
  ultra-hedge-once: {kind: speed, candidates: [m/slow, m/wise, m/fast], hedge_after_ms: 1, max_hedge_share: 1.0}
  ultra-pick: {kind: adaptive}
"""


def gateway() -> Gateway:
    """On the test's event loop clock (virtual time: the mock's latencies pass at once), when there is a loop."""
    return built(parse_settings(FLEET, env={}))


def built(settings: Settings) -> Gateway:
    try:
        clock = asyncio.get_running_loop().time
    except RuntimeError:
        clock = time.monotonic
    return build_gateway(settings, clock=clock)


def request(model: str, **extra: Any) -> Any:
    return parse_chat_request({"model": model, "messages": [{"role": "user", "content": "hello"}], **extra})


def calls(outcome: Any) -> list[tuple[str, str, str]]:
    return [(c["model"], c["role"], c["status"]) for c in outcome.body["ultra"]["calls"]]


async def started(service: Gateway) -> Gateway:
    if not service.ready:
        await service.start()
    return service


async def complete(service: Gateway, model: str, hints: dict[str, str] | None = None, **extra: Any) -> Any:
    pipeline = (await started(service)).pipeline
    return await pipeline.complete(request(model, **extra), Caller("req-test", hints=hints or {}))


async def test_waterfall_falls_over_on_error_empty_and_refusal() -> None:
    outcome = await complete(gateway(), "ultra-water")
    assert outcome.body["choices"][0]["message"]["content"] == "fast says hello"
    assert [(m, s) for m, _, s in calls(outcome)] == [
        ("fail", "error"),
        ("empty", "rejected"),
        ("refuse", "rejected"),
        ("fast", "ok"),
    ]
    assert ",".join(outcome.meta.providers) == "m/fast"


async def test_cost_cascade_escalates_cheapest_first_and_records_why() -> None:
    outcome = await complete(gateway(), "ultra-cheap")
    assert outcome.body["choices"][0]["message"]["content"] == "fast says hello"
    meta = outcome.body["ultra"]
    assert [c["model"] for c in meta["calls"]] == ["empty", "refuse", "fast"]
    assert [c.get("note") for c in meta["calls"][:2]] == ["escalated: empty answer", "escalated: refusal"]
    assert meta["escalations"] == 2


async def test_usage_and_cost_are_the_sum_over_every_call() -> None:
    service = gateway()
    for alias in ("ultra-water", "ultra-cheap", "ultra-race", "ultra-moa", "ultra-hedge", "ultra-pick", "ultra-simple"):
        outcome = await complete(service, alias)
        meta = outcome.body["ultra"]
        usages = [c["usage"] for c in meta["calls"] if c["usage"]]
        assert outcome.body["usage"]["total_tokens"] == sum(u["total_tokens"] for u in usages), alias
        assert meta["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in meta["calls"]), abs=1e-9), alias
        assert outcome.body["model"] == alias


async def test_parallel_race_returns_the_first_and_cancels_the_loser() -> None:
    outcome = await complete(gateway(), "ultra-race")
    assert outcome.body["choices"][0]["message"]["content"] == "fast says hello"
    assert sorted(calls(outcome)) == [("fast", "attempt", "ok"), ("slow", "attempt", "cancelled")]


async def test_parallel_width_adapts_aimd() -> None:
    service = gateway()
    race = service.router.strategies["ultra-race"]
    width_before = race.current_width  # type: ignore[attr-defined]
    await complete(service, "ultra-race")
    assert race.current_width < width_before  # type: ignore[attr-defined]  # clean: multiplicative decrease
    race.learn(False, True, False)  # type: ignore[attr-defined]
    assert race.current_width == 2  # type: ignore[attr-defined]  # a failure: additive increase, capped


async def test_simple_synthesis_sees_every_candidate_answer() -> None:
    outcome = await complete(gateway(), "ultra-moa")
    answer = outcome.body["choices"][0]["message"]["content"]
    assert "fast says hello" in answer
    assert "slow says hello" in answer  # the lead's prompt carried both surviving candidates
    roles = [(m, r, s) for m, r, s in calls(outcome)]
    assert ("fail", "candidate", "error") in roles
    assert [r for _, r, _ in roles][-2:] == ["analysis", "synthesis"]
    assert ",".join(outcome.meta.providers) == "m/fast,m/slow,m/wise"


async def test_simple_with_one_survivor_returns_it_as_is() -> None:
    outcome = await complete(gateway(), "ultra-moa-lone")
    assert outcome.body["choices"][0]["message"]["content"] == "fast says hello"
    assert all(role == "candidate" for _, role, _ in calls(outcome))


async def test_speed_hedges_after_the_delay_and_the_first_answer_wins() -> None:
    outcome = await complete(gateway(), "ultra-hedge")
    assert outcome.body["choices"][0]["message"]["content"] == "fast says hello"
    assert sorted(calls(outcome)) == [("fast", "attempt", "ok"), ("slow", "attempt", "cancelled")]
    assert outcome.body["ultra"]["hedged"] == 1


async def test_streaming_aliases_stream_and_account_every_call() -> None:
    service = gateway()
    for alias in ("ultra-moa", "ultra-race", "ultra-water", "ultra-cheap", "ultra-hedge", "ultra-pick"):
        chat = request(alias, stream=True, stream_options={"include_usage": True})
        async with (await started(service)).pipeline.stream(chat, Caller("req-stream")) as outcome:
            chunks = [c async for c in outcome.chunks]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text, alias
        last = chunks[-1]
        assert last["choices"] == []
        assert last["usage"]["total_tokens"] == outcome.meta.usage.total_tokens
        assert all(c["model"] == alias for c in chunks)


async def test_adaptive_honours_priority_and_learns_from_outcomes() -> None:
    service = gateway()
    outcome = await complete(service, "ultra-pick", hints={"priority": "cost"})
    assert outcome.body["ultra"]["chosen_strategy"] == "cost"
    assert outcome.body["ultra"]["reason"] == "priority: cost"
    adaptive = service.router.strategies["ultra-pick"]
    assert isinstance(adaptive, Adaptive)
    rewards = {arm: adaptive.posteriors.get((outcome.body["ultra"]["bucket"], arm)) for arm in ("cost",)}
    alpha, beta = rewards["cost"] or [1, 1]
    assert 1 < alpha < 2  # a real reward in (0, 1), not a constant 1
    assert 1 < beta < 2


async def test_adaptive_avoids_synthesis_when_tools_are_present() -> None:
    service = gateway()
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    chosen = set()
    for _ in range(12):
        outcome = await complete(service, "ultra-pick", tools=tools)
        chosen.add(outcome.body["ultra"]["chosen_strategy"])
        assert "tools: no synthesis" in outcome.body["ultra"]["reason"]
    assert not chosen & {"simple", "quality"}


def test_adaptive_reward_reflects_quality_cost_and_latency() -> None:
    service = gateway()
    adaptive = service.router.strategies["ultra-pick"]
    assert isinstance(adaptive, Adaptive)
    from gateway.core.types import Usage
    from strategies.base import Attempt, StrategyMeta

    pool = service.router.pool
    cheap = StrategyMeta(
        "x", attempts=[Attempt(pool["m/fast"], "attempt", usage=Usage(10, 10))], served_by=[pool["m/fast"]]
    )
    smart = StrategyMeta(
        "x", attempts=[Attempt(pool["m/wise"], "attempt", usage=Usage(10, 10))], served_by=[pool["m/wise"]]
    )
    assert adaptive.reward(cheap, True, 100) != adaptive.reward(smart, True, 100)
    assert adaptive.reward(smart, True, 100) > adaptive.reward(smart, True, 5000)
    assert adaptive.reward(smart, False, 100) == 0.0


def test_breaker_opens_after_failures_cools_down_and_probes() -> None:
    now = [0.0]
    live = LiveStats(failure_threshold=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(3):
        live.started("p/m")
        live.finished("p/m", ok=False, latency_ms=5)
    assert live.breaker("p/m") == "open"
    assert not live.view.available("p/m")
    now[0] = 11
    assert live.breaker("p/m") == "half_open"
    assert live.view.available("p/m")
    live.started("p/m")  # the probe
    assert not live.view.available("p/m")  # one probe at a time
    live.finished("p/m", ok=True, latency_ms=5, ttft_ms=3)
    assert live.breaker("p/m") == "closed"
    live.started("p/m")
    live.finished("p/m", ok=False, latency_ms=5, rate_limited_for=30)
    assert live.breaker("p/m") == "open"  # a 429 cools it down for its retry-after
    assert live.view.recent_429s("p/m") == 1


async def test_open_breakers_are_routed_around() -> None:
    service = gateway()
    for _ in range(3):
        service.live.started("m/fast")
        service.live.finished("m/fast", ok=False, latency_ms=1)
    ranked = by_speed([service.router.pool["m/fast"], service.router.pool["m/slow"]], service.live.view)
    assert [d.name for d in ranked] == ["m/slow", "m/fast"]  # fast's breaker is open: it goes last
    outcome = await complete(service, "ultra-hedge")  # width 1: only the best-ranked starts at once
    # slow started first; the 50 ms hedge reached fast, whose open breaker skipped it without a call
    assert outcome.body["ultra"]["hedged"] == 1
    assert sorted(calls(outcome)) == [("fast", "attempt", "skipped"), ("slow", "attempt", "ok")]
    assert outcome.body["choices"][0]["message"]["content"] == "slow says hello"


async def test_every_failure_is_502_listing_each_deployment() -> None:
    settings = parse_settings(
        FLEET.replace("ultra-pick: {kind: adaptive}", "ultra-doom: {kind: waterfall, chain: [m/fail, m/empty]}"), env={}
    )
    with pytest.raises(AllProvidersFailed) as caught:
        await complete(built(settings), "ultra-doom")
    assert caught.value.status == 502
    assert "m/fail" in caught.value.message
    assert "m/empty" in caught.value.message


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ("{kind: simple, candidats: [m/fast]}", "strategies.ultra-x.candidats: unknown key"),
        ("{kind: simple, lead: m/nope}", "strategies.ultra-x.lead: unknown deployment 'm/nope' (use PROVIDER/MODEL)"),
        (
            "{kind: waterfall, chain: [m/fast, x/y]}",
            "strategies.ultra-x.chain[1]: unknown deployment 'x/y' (use PROVIDER/MODEL)",
        ),
        ("{kind: parallel, max_width: 99}", "strategies.ultra-x.max_width: Input should be less than or equal to 8"),
        ("{kind: adaptive, arms: [magic]}", "strategies.ultra-x.arms[0]:"),
        ("{kind: magic}", "strategies.ultra-x.kind: unknown strategy kind 'magic' (one of: simple, parallel,"),
    ],
)
def test_strategy_options_are_validated_at_load(options: str, error: str) -> None:
    text = FLEET.split("strategies:")[0] + f"strategies:\n  ultra-x: {options}\n"
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, env={})
    assert any(line.startswith(error) for line in caught.value.errors), caught.value.errors


def test_rng_is_injectable_for_deterministic_choices() -> None:
    service = gateway()
    adaptive = service.router.strategies["ultra-pick"]
    assert isinstance(adaptive, Adaptive)
    from gateway.core.pool import ProviderPool
    from strategies.base import StrategyContext, StrategyMeta

    def pick(seed: int) -> str:
        ctx = StrategyContext(meta=StrategyMeta("x"), deadline=1e18, rng=random.Random(seed))
        pool: ProviderPool = service.router.pool
        return adaptive.choose(request("ultra-pick"), pool, ctx)[0]

    assert [pick(7) for _ in range(3)] == [pick(7)] * 3


async def test_live_stats_learn_latency_and_ttft_from_whole_answers() -> None:
    service = gateway()
    await complete(service, "ultra-water")
    fast = service.live.view.get("m/fast")
    assert fast.calls == 1
    assert fast.ttft_ms is not None
    assert fast.ttft_ms > 0
    assert service.live.view.get("m/fail").success < 1.0


PATIENT = """
providers:
  - name: m
    kind: mock
    models:
      - {id: glacial, latency_ms: 120000, reply: "glacial says {prompt}"}
      - {id: fast, latency_ms: 5, reply: "fast says {prompt}"}
server: {request_timeout_s: 3600}
cache: {enabled: false}
rate_limits: {enabled: false}
strategies:
  ultra-patient: {kind: speed, candidates: [m/glacial, m/fast], hedge_after_ms: 30000, max_hedge_share: 1.0}
"""


async def test_strategies_run_on_the_loops_virtual_clock() -> None:
    """A 30 s hedge delay and a 2 min upstream: on virtual time the hedge fires at 30 s of loop time, the 5 ms
    hedge wins, and every timing the strategy records is loop time (this would take 30 s of real time, past
    the test's timeout, on a real clock)."""
    loop = asyncio.get_running_loop()
    service = build_gateway(parse_settings(PATIENT, env={}), clock=loop.time)
    started = loop.time()
    outcome = await complete(service, "ultra-patient")
    elapsed = loop.time() - started
    assert outcome.body["choices"][0]["message"]["content"] == "fast says hello"
    assert outcome.body["ultra"]["hedged"] == 1
    assert elapsed == pytest.approx(30.005, abs=1e-3)
    latencies = {c["model"]: (c["status"], c["latency_ms"]) for c in outcome.body["ultra"]["calls"]}
    assert latencies["glacial"] == ("cancelled", pytest.approx(30005, abs=1))
    assert latencies["fast"] == ("ok", pytest.approx(5, abs=1))


async def test_the_request_deadline_is_on_the_same_clock() -> None:
    loop = asyncio.get_running_loop()
    text = PATIENT.replace("request_timeout_s: 3600", "request_timeout_s: 2").replace(
        "ultra-patient: {kind: speed",
        "ultra-patient: {kind: waterfall, chain: [m/glacial]}\n  ultra-unused: {kind: speed",
    )
    service = build_gateway(parse_settings(text, env={}), clock=loop.time)
    started = loop.time()
    with pytest.raises(UpstreamError):  # the request's total timeout or the upstream's, whichever is seen first
        await complete(service, "ultra-patient")
    assert loop.time() - started == pytest.approx(2.0, abs=1e-3)  # the 2 min upstream gave up at the deadline


async def test_a_request_hedges_once_however_long_it_waits() -> None:
    """The budget pays for one hedge: slow (400 ms) starts, wise (20 ms) is the hedge after 1 ms, and fast is
    never started although the first two keep it waiting far past the hedge delay."""
    outcome = await complete(gateway(), "ultra-hedge-once")
    assert outcome.body["ultra"]["hedged"] == 1
    assert sorted(calls(outcome)) == [("slow", "attempt", "cancelled"), ("wise", "attempt", "ok")]
