"""What an upstream can do to the gateway through its answers: a huge body or stream is cut off at the
provider's `max_response_bytes` with a 502 saying so, and an error page echoing the key leaks no piece of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._app import in_process
from tests.fakes.faulty_upstream import FaultyUpstream

KEY = "9d3b7c1e5a2f4680" * 4  # a 64-hex key with no recognisable prefix


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(oversize_bytes=3 * 1024 * 1024) as server:
        yield server


def config(url: str) -> str:
    return f"""
providers:
  - name: up
    kind: openai
    base_url: {url}
    api_key_env: LIMITS_UPSTREAM_KEY
    max_retries: 0
    max_response_bytes: 1048576
    models: [{{id: ok}}, {{id: oversized}}, {{id: keyleak}}]
cache: {{enabled: false}}
"""


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMITS_UPSTREAM_KEY", KEY)


@pytest.mark.parametrize("stream", [False, True])
async def test_an_oversized_upstream_answer_is_a_502_saying_so(upstream: FaultyUpstream, stream: bool) -> None:
    async with in_process(config(upstream.url)) as client:
        body = {"model": "up/oversized", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        response = await client.post("/v1/chat/completions", json=body)
        ok = await client.post("/v1/chat/completions", json={**body, "model": "up/ok"})
    assert ok.status_code == 200, ok.text
    if stream:  # the first chunk went out before the cap was reached: the error is the stream's last event
        assert response.status_code == 200
        assert b'"error"' in response.content
        assert b"too large" in response.content
        assert b"[DONE]" not in response.content
    else:
        assert response.status_code == 502, response.text[:300]
        assert len(response.content) < 10_000
        assert "too large" in response.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_error_page_echoing_the_key_leaks_no_piece_of_it(
    upstream: FaultyUpstream, stream: bool
) -> None:
    async with in_process(config(upstream.url)) as client:
        body = {"model": "up/keyleak", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 502, response.text
    assert upstream.authorizations[-1] == f"Bearer {KEY}"
    text = response.text
    leaked = [KEY[i : i + 8] for i in range(len(KEY) - 8) if KEY[i : i + 8] in text]
    assert leaked == [], text
