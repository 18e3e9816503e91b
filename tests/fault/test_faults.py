"""Every upstream fault the fake can produce, through every kind of route, whole and streamed.

For each case: the gateway never answers 500, never runs past the request deadline, answers failures with an
OpenAI-shaped error (a status, or an in-band error event once a stream has started), and the upstream key (the
canary) appears in no response body, no response header and no log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests._app import in_process
from tests.fakes.faulty_upstream import FaultyUpstream, closed_port

CANARY = "c0ffee5a1d9b4e7f" * 4  # the upstream key: 64 hex characters, no prefix a pattern would know
DEADLINE_S = 1.5
MARGIN_S = 2.0
MODES = [
    "status-500",
    "status-503",
    "ratelimit",
    "refused",
    "reset",
    "hang-headers",
    "hang-stream",
    "garbage",
    "truncated",
    "trickle",
    "oversized",
    "keyleak",
]
ROUTES = ["direct", "fallbacks", "waterfall", "race"]
_FAKE_LOGGERS = {"aiohttp.server", "aiohttp.access", "aiohttp.web"}  # the fake upstream's side, not ours
ROLES = ["d", "f", "g"]  # direct; fallbacks from f to g; the aliases chain or race d and g


def _deployment(role: str, mode: str) -> str:
    return f"{role}-down/refused" if mode == "refused" else f"{role}/{mode}"


def _model(route: str, mode: str) -> str:
    return {
        "direct": _deployment("d", mode),
        "fallbacks": _deployment("f", mode),
        "waterfall": f"ultra-wf-{mode}",
        "race": f"ultra-race-{mode}",
    }[route]


def _config(url: str) -> str:
    served = [m for m in MODES if m != "refused"]
    lines = [f"server: {{request_timeout_s: {DEADLINE_S}}}", "providers:"]
    common = (
        "    api_key_env: FAULT_UPSTREAM_KEY\n    max_retries: 1\n    max_response_bytes: 1048576\n"
        "    timeout: {connect_s: 0.5, read_s: 0.4, total_s: 1.5}\n"
    )
    for role in ROLES:
        models = ", ".join(f"{{id: {m}}}" for m in served)
        lines.append(f"  - name: {role}\n    kind: openai\n    base_url: {url}\n{common}    models: [{models}]")
        down = f"http://127.0.0.1:{closed_port()}/v1"
        lines.append(
            f"  - name: {role}-down\n    kind: openai\n    base_url: {down}\n{common}    models: [{{id: refused}}]"
        )
    lines.append("fallbacks:")
    for mode in MODES:
        lines.append(f"  {_deployment('f', mode)}: [{_deployment('g', mode)}]")
    lines.append("strategies:")
    for mode in MODES:
        pair = f"[{_deployment('d', mode)}, {_deployment('g', mode)}]"
        lines.append(f"  ultra-wf-{mode}: {{kind: waterfall, chain: {pair}}}")
        lines.append(f"  ultra-race-{mode}: {{kind: parallel, candidates: {pair}, initial_width: 2}}")
    lines.append("cache: {enabled: false}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(oversize_bytes=2 * 1024 * 1024) as server:
        yield server


@pytest.fixture
async def client(upstream: FaultyUpstream, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("FAULT_UPSTREAM_KEY", CANARY)
    async with in_process(_config(upstream.url)) as c:
        yield c


def _assert_error_shape(error: Any) -> None:
    assert isinstance(error, dict), error
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)


def _assert_no_canary(text: str) -> None:
    pieces = [CANARY[i : i + 12] for i in range(len(CANARY) - 11)]
    leaked = [p for p in pieces if p in text]
    assert not leaked, f"a piece of the upstream key leaked: {leaked[:3]} in {text[:500]!r}"


def _events(body: bytes) -> list[bytes]:
    return [e.removeprefix(b"data: ") for e in body.split(b"\n\n") if e.startswith(b"data: ")]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("mode", MODES)
async def test_an_upstream_fault_is_an_openai_error_in_time_and_leaks_no_key(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, mode: str, route: str, stream: bool
) -> None:
    body = {"model": _model(route, mode), "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        async with asyncio.timeout(DEADLINE_S + MARGIN_S):
            response = await client.post("/v1/chat/completions", json=body)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE_S + MARGIN_S
    assert response.status_code != 500, response.text[:500]
    if response.status_code != 200:
        assert response.status_code in (400, 429, 502, 503, 504), response.text[:500]
        _assert_error_shape(response.json()["error"])
    elif stream:
        events = _events(response.content)
        assert events, response.content[:300]
        if events[-1] != b"[DONE]":
            _assert_error_shape(orjson.loads(events[-1])["error"])
    else:
        assert response.json()["object"] == "chat.completion"
    if response.status_code == 200 and stream:
        # Every fault here fails every deployment it reaches: a stream must not end as if it were complete.
        assert _events(response.content)[-1] != b"[DONE]", response.content[:500]
    _assert_no_canary(response.text)
    _assert_no_canary("\n".join(f"{k}: {v}" for k, v in response.headers.items()))
    ours = [r for r in caplog.records if r.name not in _FAKE_LOGGERS]
    logged = "\n".join(
        r.getMessage() + (r.exc_text or "") + (str(r.exc_info[1]) if r.exc_info and r.exc_info[1] else "") for r in ours
    )
    _assert_no_canary(logged)
    assert not [r for r in ours if r.levelno >= logging.ERROR], logged[-2000:]


async def test_the_fake_did_see_the_canary(client: httpx.AsyncClient, upstream: FaultyUpstream) -> None:
    """The canary checks mean something only if the key really travelled to the upstream."""
    body = {"model": "d/keyleak", "messages": [{"role": "user", "content": "hi"}]}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 502
    assert f"Bearer {CANARY}" in upstream.authorizations
