"""Model groups through the real pipeline on mock deployments: each routing policy's choice (a seeded RNG, the
loop's virtual clock), fallover to the group's other deployments, a group over an alias, and the configuration
checks."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from gateway.builder import build_gateway
from gateway.config import ConfigError, parse_settings
from gateway.core.types import parse_chat_request
from gateway.pipeline import Caller
from gateway.service import Gateway

pytestmark = [pytest.mark.timeout(30), pytest.mark.virtual_time]

FLEET = """
providers:
  - name: east
    kind: mock
    models:
      - {id: gpt-4o, latency_ms: 50, reply: "east: {prompt}"}
      - {id: broken, failure_rate: 1.0}
  - name: west
    kind: mock
    models:
      - {id: gpt-4o, latency_ms: 50, reply: "west: {prompt}"}
      - {id: slow, latency_ms: 400, reply: "slow: {prompt}"}
  - name: north
    kind: mock
    models:
      - {id: fast, latency_ms: 10, reply: "fast: {prompt}"}
cache: {enabled: false}
rate_limits: {enabled: false}
strategies:
  ultra-water: {kind: waterfall, chain: [east/broken, west/gpt-4o]}
model_groups:
  gpt-4o: {deployments: [east/gpt-4o, west/gpt-4o], routing: weighted, weights: [3, 1]}
  spare: {deployments: [east/gpt-4o, west/gpt-4o], weights: [1, 0]}
  busy: {deployments: [east/gpt-4o, west/gpt-4o], routing: least_in_flight}
  quick: {deployments: [west/slow, north/fast], routing: lowest_latency}
  shaky: {deployments: [east/broken, west/gpt-4o], routing: least_in_flight}
  bad-first: {deployments: [east/broken, west/gpt-4o], weights: [1, 0]}
  default: {alias: ultra-water}
"""


def gateway(seed: int = 7) -> Gateway:
    settings = parse_settings(FLEET, env={})
    return build_gateway(settings, clock=asyncio.get_running_loop().time, rng=random.Random(seed))


async def complete(service: Gateway, model: str, **extra: Any) -> dict[str, Any]:
    if not service.ready:
        await service.start()
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
    answer = await service.pipeline.complete(parse_chat_request(body), Caller("req-test"))
    result: dict[str, Any] = answer.body
    return result


def served(body: dict[str, Any]) -> str:
    ok = [c for c in body["ultra"]["calls"] if c["status"] == "ok"]
    return f"{ok[-1]['provider']}/{ok[-1]['model']}"


async def test_weighted_draws_by_the_weights() -> None:
    service = gateway()
    try:
        counts = Counter([served(await complete(service, "gpt-4o")) for _ in range(400)])
    finally:
        await service.aclose()
    assert set(counts) == {"east/gpt-4o", "west/gpt-4o"}
    assert 0.68 <= counts["east/gpt-4o"] / 400 <= 0.82  # weights 3:1


async def test_the_answer_carries_the_group_name_and_its_routing() -> None:
    service = gateway()
    try:
        body = await complete(service, "gpt-4o")
    finally:
        await service.aclose()
    assert body["model"] == "gpt-4o"
    assert body["ultra"]["strategy"] == "gpt-4o"
    assert body["ultra"]["routing"] == "weighted"
    assert body["choices"][0]["message"]["content"] in ("east: hello", "west: hello")


async def test_a_zero_weight_is_a_fallback_only() -> None:
    service = gateway()
    try:
        counts = Counter([served(await complete(service, "spare")) for _ in range(50)])
        fell_over = await complete(service, "bad-first")
    finally:
        await service.aclose()
    assert counts == {"east/gpt-4o": 50}
    calls = [(c["provider"], c["model"], c["status"]) for c in fell_over["ultra"]["calls"]]
    assert calls == [("east", "broken", "error"), ("west", "gpt-4o", "ok")]
    assert fell_over["choices"][0]["message"]["content"] == "west: hello"


async def test_least_in_flight_spreads_concurrent_requests_evenly() -> None:
    service = gateway()
    try:
        await service.start()
        bodies = await asyncio.gather(*(complete(service, "busy") for _ in range(6)))
    finally:
        await service.aclose()
    assert Counter(served(b) for b in bodies) == {"east/gpt-4o": 3, "west/gpt-4o": 3}


async def test_lowest_latency_measures_every_deployment_then_prefers_the_fastest() -> None:
    service = gateway()
    try:
        first_two = {served(await complete(service, "quick")) for _ in range(2)}
        then = [served(await complete(service, "quick")) for _ in range(10)]
    finally:
        await service.aclose()
    assert first_two == {"west/slow", "north/fast"}  # unknown deployments are explored first
    assert then == ["north/fast"] * 10


async def test_a_failing_member_falls_over_and_goes_last_once_its_breaker_opens() -> None:
    service = gateway()
    try:
        bodies = [await complete(service, "shaky") for _ in range(8)]
    finally:
        await service.aclose()
    assert all(b["choices"][0]["message"]["content"] == "west: hello" for b in bodies)
    first = [b["ultra"]["calls"][0]["model"] for b in bodies]
    # ties broken at random until the broken member is drawn first once: its tries open the breaker, and from
    # then on it goes last (never called, since the healthy member answers)
    assert first.count("broken") == 1
    assert sum(c["model"] == "broken" for b in bodies for c in b["ultra"]["calls"]) == 1


async def test_a_group_streams_and_falls_over_while_opening() -> None:
    service = gateway()
    try:
        await service.start()
        request = parse_chat_request(
            {"model": "bad-first", "messages": [{"role": "user", "content": "hello"}], "stream": True}
        )
        async with service.pipeline.stream(request, Caller("req-test")) as answer:
            text = "".join(
                [c["choices"][0]["delta"].get("content") or "" async for c in answer.chunks if c.get("choices")]
            )
    finally:
        await service.aclose()
    assert text == "west: hello"


async def test_a_group_over_an_alias_is_that_alias_under_another_name() -> None:
    service = gateway()
    try:
        assert service.router.route("default") is service.router.route("ultra-water")
        body = await complete(service, "default")
    finally:
        await service.aclose()
    assert body["model"] == "default"
    assert body["choices"][0]["message"]["content"] == "west: hello"
    assert service.router.strategy_name("default") == "default"  # metrics count it under its own name


async def test_groups_are_model_names_the_router_serves() -> None:
    service = gateway()
    names = service.router.model_ids()
    for group in ("gpt-4o", "spare", "busy", "quick", "shaky", "bad-first", "default"):
        assert group in names
        assert service.router.known(group)
    assert "ultra-group" not in names  # the kind needs deployments: no built-in alias


def errors_of(groups: str) -> list[str]:
    text = FLEET.split("model_groups:")[0] + "model_groups:\n" + groups
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, env={})
    return caught.value.errors


def test_group_names_must_not_clash_with_aliases_or_deployments() -> None:
    assert errors_of("  ultra-cost: {alias: ultra-water}\n  east/gpt-4o: {deployments: [west/gpt-4o]}\n") == [
        "model_groups.ultra-cost: the name 'ultra-cost' is already a strategy alias",
        "model_groups.east/gpt-4o: the name 'east/gpt-4o' is already a deployment (PROVIDER/MODEL)",
    ]


def test_group_members_weights_and_routing_are_checked() -> None:
    assert errors_of(
        "  a: {deployments: [east/gpt-4o, east/nope]}\n"
        "  b: {deployments: [east/gpt-4o], weights: [1, 2]}\n"
        "  c: {deployments: [east/gpt-4o], routing: fastest}\n"
        "  d: {alias: ultra-nope}\n"
        "  e: {deployments: [east/gpt-4o], routing: least_in_flight, weights: [1]}\n"
    ) == [
        "model_groups.a.deployments[1]: unknown deployment 'east/nope' (use PROVIDER/MODEL)",
        "model_groups.b: weights has 2 entries for 1 deployments (one each)",
        "model_groups.c.routing: Input should be 'weighted', 'least_in_flight' or 'lowest_latency'",
        "model_groups.d.alias: unknown strategy alias 'ultra-nope'",
        "model_groups.e: weights only apply to routing: weighted",
    ]


def test_a_group_names_deployments_or_an_alias_not_both() -> None:
    assert errors_of("  a: {alias: ultra-water, deployments: [east/gpt-4o]}\n") == [
        "model_groups.a: give exactly one of deployments and alias"
    ]
