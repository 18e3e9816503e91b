"""Fleet health on every route, with the openai SDK as the client (over the app in-process) and a fake
OpenAI-compatible upstream over loopback that counts every call:

- a dead upstream is probed, not hammered: its breaker opens after three failed tries (retries included), and
  then direct requests, fallbacks, waterfall, the cost cascade and races skip it (`status: skipped`), or the
  client gets a fast 503 with `retry-after` when nothing else can answer;
- a 429 with `retry-after: 30` cools its deployment down: not called again before then (429 to the client
  when nothing else can answer);
- one hedge demotes a deployment that turned slow (the abandoned call is a censored latency sample);
- an upstream that reports no usage still yields a usage chunk, marked estimated in the metadata;
- every failed try, skip, breaker transition and hedge is in `/metrics`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.builder import build_gateway
from gateway.config import parse_settings
from gateway.http.app import create_app
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.timeout(60)

CONFIG = """
cache: {{enabled: false}}
providers:
  - name: up
    kind: openai
    base_url: {url}
    max_retries: 2
    breaker: {{failure_threshold: 3, cooldown_s: 60}}
    timeout: {{connect_s: 2, read_s: 10, total_s: 20}}
    models: [{{id: echo}}, {{id: nousage}}]
{dead}
  - name: slowable
    kind: openai
    base_url: {url}
    max_retries: 0
    models: [{{id: var-a}}, {{id: var-b}}]
fallbacks:
  fb/status-503: [up/echo]
strategies:
  ultra-wf: {{kind: waterfall, chain: [wf/ratelimit-30, up/echo]}}
  ultra-cheap: {{kind: cost, chain: [cc/status-502, up/echo]}}
  ultra-race: {{kind: parallel, candidates: [pr/status-504, up/echo], initial_width: 2, max_width: 2}}
  ultra-fast: {{kind: speed, candidates: [slowable/var-a, slowable/var-b], hedge_after_ms: 200}}
"""
# one provider per scenario, so each has its own breaker (and the fake counts its calls by model)
DEAD = {"direct": "status-500", "fb": "status-503", "wf": "ratelimit-30", "cc": "status-502", "pr": "status-504"}


def _dead_providers(url: str) -> str:
    return "\n".join(
        f"""  - name: {name}
    kind: openai
    base_url: {url}
    max_retries: 2
    breaker: {{failure_threshold: 3, cooldown_s: 60}}
    models: [{{id: {model}}}]"""
        for name, model in DEAD.items()
    )


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
async def gateway_app(fake: FakeOpenAI) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = parse_settings(CONFIG.format(url=fake.url, dead=_dead_providers(fake.url)), env={})
    gateway = build_gateway(settings, env={})
    app = create_app(settings, gateway=gateway)
    await gateway.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            yield gateway, http
    finally:
        await gateway.aclose()


@pytest.fixture
def client(gateway_app: tuple[Any, httpx.AsyncClient]) -> openai.AsyncOpenAI:
    # no SDK retries: each call below is exactly one request to the gateway
    return openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="x", max_retries=0, http_client=gateway_app[1])


MESSAGES: Any = [{"role": "user", "content": "hello there"}]


async def ask(client: openai.AsyncOpenAI, model: str, stream: bool) -> dict[str, Any]:
    """One request, whole or streamed; returns the `ultra` metadata (from the last chunk when streamed)."""
    if not stream:
        reply = await client.chat.completions.create(model=model, messages=MESSAGES)
        assert reply.choices[0].message.content
        extra: dict[str, Any] = reply.model_extra or {}
        return dict(extra["ultra"])
    chunks = [
        c
        async for c in await client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    ]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    return dict((chunks[-1].model_extra or {})["ultra"])


def statuses(meta: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f"{c['provider']}/{c['model']}", c["status"]) for c in meta["calls"]]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_dead_direct_deployment_is_probed_not_hammered(
    client: openai.AsyncOpenAI, fake: FakeOpenAI, stream: bool
) -> None:
    with pytest.raises(openai.InternalServerError) as first:  # three tries (two retries), then a 502
        await ask(client, "direct/status-500", stream)
    assert first.value.status_code == 502
    assert len(fake.bodies_for("status-500")) == 3
    for _ in range(11):  # the breaker is open: a fast 503 saying when to come back, and no upstream call
        with pytest.raises(openai.InternalServerError) as skipped:
            await ask(client, "direct/status-500", stream)
        assert skipped.value.status_code == 503
        assert 55 <= int(skipped.value.response.headers["retry-after"]) <= 60
        assert skipped.value.body["code"] == "service_unavailable"  # type: ignore[index]
    assert len(fake.bodies_for("status-500")) == 3


@pytest.mark.parametrize("stream", [False, True])
async def test_a_race_stops_calling_a_dead_racer(client: openai.AsyncOpenAI, fake: FakeOpenAI, stream: bool) -> None:
    """The race either skips it (breaker open) or ranks it out of its narrowed width: never hammered."""
    for _ in range(6):
        await ask(client, "ultra-race", stream)
    calls = len(fake.bodies_for("status-504"))
    assert calls <= 3
    for _ in range(4):
        meta = await ask(client, "ultra-race", stream)
        assert [s for d, s in statuses(meta) if d == "pr/status-504"] in ([], ["skipped"])
        assert ("up/echo", "ok") in statuses(meta)
    assert len(fake.bodies_for("status-504")) == calls


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "dead"), [("fb/status-503", "fb/status-503"), ("ultra-cheap", "cc/status-502")])
async def test_fallbacks_and_cascades_skip_an_open_breaker(
    client: openai.AsyncOpenAI, fake: FakeOpenAI, stream: bool, model: str, dead: str
) -> None:
    for _ in range(6):  # the dead deployment fails (every try counted), another answers, until it opens
        meta = await ask(client, model, stream)
        if (dead, "skipped") in statuses(meta):
            break
    else:
        pytest.fail(f"{dead} was never taken out of rotation")
    calls = len(fake.bodies_for(dead.split("/")[1]))
    assert calls == 3  # probed three times (two retries), then out of rotation
    for _ in range(4):
        meta = await ask(client, model, stream)
        assert (dead, "skipped") in statuses(meta)
        assert next(c for c in meta["calls"] if c["status"] == "skipped")["note"] == "breaker_open"
        assert ("up/echo", "ok") in statuses(meta)
    assert len(fake.bodies_for(dead.split("/")[1])) == calls


@pytest.mark.parametrize("stream", [False, True])
async def test_a_waterfall_never_calls_a_deployment_before_its_retry_after(
    client: openai.AsyncOpenAI, fake: FakeOpenAI, stream: bool
) -> None:
    meta = await ask(client, "ultra-wf", stream)
    assert statuses(meta) == [("wf/ratelimit-30", "error"), ("up/echo", "ok")]  # no retry into a 30 s wait
    for _ in range(3):
        meta = await ask(client, "ultra-wf", stream)
        assert statuses(meta) == [("wf/ratelimit-30", "skipped"), ("up/echo", "ok")]
        assert meta["calls"][0]["note"] == "rate_limited"
    assert len(fake.bodies_for("ratelimit-30")) == 1


async def test_with_every_deployment_cooling_down_the_client_gets_a_fast_429(
    client: openai.AsyncOpenAI, fake: FakeOpenAI
) -> None:
    with pytest.raises(openai.RateLimitError):  # the upstream's own 429
        await ask(client, "wf/ratelimit-30", False)
    with pytest.raises(openai.RateLimitError) as cooling:  # no upstream call: the gateway knows it must wait
        await ask(client, "wf/ratelimit-30", True)
    assert 25 <= int(cooling.value.response.headers["retry-after"]) <= 30
    assert len(fake.bodies_for("ratelimit-30")) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_one_hedge_demotes_a_deployment_that_turned_slow(
    client: openai.AsyncOpenAI, fake: FakeOpenAI, stream: bool
) -> None:
    fake.delays["var-b"] = 0.02
    for _ in range(3):  # var-a answers in 1 ms, var-b in 20 ms (measured through direct requests): var-a first
        await ask(client, "ultra-fast", stream)
        await ask(client, "slowable/var-b", stream)
    fake.delays["var-a"] = 5.0  # var-a turns slow
    rescued = await ask(client, "ultra-fast", stream)
    assert rescued.get("hedged") == 1  # the 200 ms hedge to var-b answered; var-a was abandoned
    assert ("slowable/var-b", "ok") in statuses(rescued)
    for _ in range(3):  # the abandoned call taught the live statistics: var-b goes first, nobody waits
        meta = await ask(client, "ultra-fast", stream)
        assert statuses(meta) == [("slowable/var-b", "ok")]
        assert "hedged" not in meta


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_without_usage_still_yields_estimated_usage(
    client: openai.AsyncOpenAI, fake: FakeOpenAI, stream: bool
) -> None:
    meta = await ask(client, "up/nousage", stream)  # asserts the usage chunk when streamed
    call = meta["calls"][0]
    assert call["usage_estimated"] is True
    assert call["usage"]["prompt_tokens"] > 0
    assert call["usage"]["completion_tokens"] > 0
    assert meta["cost_usd"] == pytest.approx(call["cost_usd"])


async def test_metrics_show_retries_skips_transitions_and_hedges(
    client: openai.AsyncOpenAI, fake: FakeOpenAI, gateway_app: tuple[Any, httpx.AsyncClient]
) -> None:
    for _ in range(2):
        await ask(client, "fb/status-503", False)
    fake.delays["var-a"] = 5.0
    await ask(client, "ultra-fast", False)
    text = (await gateway_app[1].get("/metrics")).text
    assert 'ultra_provider_errors_total{deployment="fb/status-503",error_type="http_503",retried="yes"} 2' in text
    assert 'ultra_provider_errors_total{deployment="fb/status-503",error_type="http_503",retried="no"} 1' in text
    assert 'ultra_skipped_calls_total{deployment="fb/status-503",reason="breaker_open"} 1' in text
    assert 'ultra_circuit_breaker_transitions_total{deployment="fb/status-503",to="open"} 1' in text
    assert 'ultra_circuit_breaker_open{deployment="fb/status-503"} 1' in text
    assert 'ultra_hedges_total{strategy="ultra-fast"} 1' in text
