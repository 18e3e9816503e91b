"""The inbound routes besides chat, in-process: their auth, error shapes and per-key state, and the 404 that
lists what is served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.builder import build_gateway
from gateway.config import parse_settings
from gateway.http.app import create_app
from gateway.http.edge import route_template
from tests._app import in_process
from tests.fakes.openai_upstream import FakeOpenAI

CONFIG = """
server: {max_body_bytes: 4096}
providers:
  - name: fast
    kind: mock
    models:
      - {id: echo, reply: "echo: {prompt}"}
      - {id: down, failure_rate: 1.0}
  - name: claude
    kind: anthropic
    base_url: http://127.0.0.1:9
    models: [{id: sonnet}]
auth:
  keys:
    - {name: team-a, key: sk-a}
    - {name: team-b, key: sk-b}
    - {name: once, key: sk-once, rpm: 1}
"""
A, B = {"authorization": "Bearer sk-a"}, {"authorization": "Bearer sk-b"}
MESSAGE = {"model": "fast/echo", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(CONFIG) as c:
        yield c


def anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert response.headers["x-request-id"]
    message: str = body["error"]["message"]
    return message


async def test_an_unknown_path_lists_the_endpoints(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/completions", json={}, headers=A)
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "not_found"
    for endpoint in ("POST /v1/chat/completions", "POST /v1/responses", "POST /v1/messages", "POST /v1/embeddings"):
        assert endpoint in error["message"]


async def test_messages_take_the_key_as_x_api_key_or_bearer(client: httpx.AsyncClient) -> None:
    for headers in ({"x-api-key": "sk-a"}, A):
        response = await client.post("/v1/messages", json=MESSAGE, headers=headers)
        assert response.status_code == 200
        assert response.json()["content"] == [{"type": "text", "text": "echo: hi"}]
    anthropic_error(await client.post("/v1/messages", json=MESSAGE), 401, "authentication_error")
    anthropic_error(
        await client.post("/v1/messages", json=MESSAGE, headers={"x-api-key": "no"}), 401, "authentication_error"
    )


async def test_messages_errors_are_anthropic_shaped(client: httpx.AsyncClient) -> None:
    anthropic_error(await client.get("/v1/messages", headers=A), 405, "invalid_request_error")
    anthropic_error(await client.post("/v1/messages", content=b"{nope", headers=A), 400, "invalid_request_error")
    big = {**MESSAGE, "messages": [{"role": "user", "content": "x" * 5000}]}
    anthropic_error(await client.post("/v1/messages", json=big, headers=A), 413, "request_too_large")
    message = anthropic_error(
        await client.post("/v1/messages", json={**MESSAGE, "model": "fast/down", "stream": True}, headers=A),
        502,
        "api_error",
    )
    assert "fast/down" in message
    anthropic_error(
        await client.post("/v1/messages/count_tokens", json={**MESSAGE, "model": "nope"}, headers=A),
        404,
        "not_found_error",
    )


async def test_stored_responses_belong_to_the_key_that_made_them(client: httpx.AsyncClient) -> None:
    made = await client.post("/v1/responses", json={"model": "fast/echo", "input": "mine"}, headers=A)
    response_id = made.json()["id"]
    assert (await client.get(f"/v1/responses/{response_id}", headers=A)).json()["id"] == response_id
    assert (await client.get(f"/v1/responses/{response_id}", headers=B)).status_code == 404
    chained = await client.post(
        "/v1/responses", json={"model": "fast/echo", "input": "x", "previous_response_id": response_id}, headers=B
    )
    assert chained.status_code == 404
    assert chained.json()["error"]["param"] == "previous_response_id"
    assert (await client.delete(f"/v1/responses/{response_id}", headers=B)).status_code == 404
    assert (await client.delete(f"/v1/responses/{response_id}", headers=A)).json()["deleted"] is True
    assert (await client.get(f"/v1/responses/{response_id}")).status_code == 401


async def test_embeddings_are_refused_by_a_provider_without_them_and_rate_limited(client: httpx.AsyncClient) -> None:
    refused = await client.post("/v1/embeddings", json={"model": "claude/sonnet", "input": "x"}, headers=A)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "model"
    once = {"authorization": "Bearer sk-once"}
    first = await client.post("/v1/embeddings", json={"model": "fast/echo", "input": "x"}, headers=once)
    assert first.status_code == 200
    assert first.headers["x-ultra-providers"] == "fast/echo"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    second = await client.post("/v1/embeddings", json={"model": "fast/echo", "input": "x"}, headers=once)
    assert second.status_code == 429
    metrics = (await client.get("/metrics")).text
    assert 'ultra_requests_total{model="fast/echo",strategy="direct",status="200"} 1' in metrics
    assert 'ultra_requests_total{model="fast/echo",strategy="direct",status="429"} 1' in metrics


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/messages", "/v1/messages"),
        ("/v1/messages/count_tokens", "/v1/messages/count_tokens"),
        ("/v1/responses", "/v1/responses"),
        ("/v1/responses/resp_123", "/v1/responses/{response_id}"),
        ("/v1/embeddings", "/v1/embeddings"),
    ],
)
def test_route_templates_name_spans_and_log_lines(path: str, template: str) -> None:
    assert route_template(path) == template


async def test_responses_stream_sends_typed_events_with_sequence_numbers(client: httpx.AsyncClient) -> None:
    async with client.stream(
        "POST", "/v1/responses", json={"model": "fast/echo", "input": "a b", "stream": True}, headers=A
    ) as response:
        text = (await response.aread()).decode()
    blocks = [b for b in text.split("\n\n") if b]
    names = [b.split("\n")[0].removeprefix("event: ") for b in blocks]
    assert names[0] == "response.created"
    assert names[-1] == "response.completed"
    data: list[dict[str, Any]] = [httpx.Response(200, content=b.split("\ndata: ")[1]).json() for b in blocks]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert all(d["type"] == name for d, name in zip(data, names, strict=True))


async def test_a_stream_cut_after_the_start_ends_with_the_apis_own_error_events() -> None:
    with FakeOpenAI() as fake:
        config = f"""
providers:
  - name: up
    kind: openai
    base_url: {fake.url}
    max_retries: 0
    models: [{{id: cut}}]
"""
        settings = parse_settings(config, env={})
        gateway = build_gateway(settings)
        app = create_app(settings, gateway=gateway)
        await gateway.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
                body = {
                    "model": "up/cut",
                    "max_tokens": 20,
                    "stream": True,
                    "messages": [{"role": "user", "content": "x"}],
                }
                messages = (await client.post("/v1/messages", json=body)).text
                responses = (
                    await client.post("/v1/responses", json={"model": "up/cut", "input": "x", "stream": True})
                ).text
        finally:
            await gateway.aclose()
    last = [b for b in messages.split("\n\n") if b][-1].split("\n")
    assert last[0] == "event: error"
    error = orjson.loads(last[1].removeprefix("data: "))
    assert error["type"] == "error"
    assert error["error"]["type"] == "api_error"
    assert "message_stop" not in messages
    blocks = [b.split("\n") for b in responses.split("\n\n") if b]
    assert [b[0] for b in blocks[-2:]] == ["event: error", "event: response.failed"]
    failed = orjson.loads(blocks[-1][1].removeprefix("data: "))
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"]
    assert "response.completed" not in responses
