"""Hostile request bodies and paths through the in-process app: deep nesting, loosely typed fields, huge model
names and double-encoded model ids each get a bounded 4xx, never a 500 or an echo of the whole input."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.http.test_limits_cache_auth import Client, client_for

CONFIG = """
providers:
  - name: fast
    kind: mock
    models:
      - {id: echo, reply: "echo: {prompt}"}
cache: {enabled: true, backend: memory}
auth:
  keys:
    - {name: open, key: sk-open}
    - {name: narrow, key: sk-narrow, models: ["fast/e*"]}
"""
OPEN = {"authorization": "Bearer sk-open"}
NARROW = {"authorization": "Bearer sk-narrow"}


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async for c in client_for(CONFIG):
        yield c


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "fast/echo", "messages": [{"role": "user", "content": "hi"}], **extra}


def nested(depth: int) -> bytes:
    """JSON text nesting objects and arrays `depth` deep (built as text: serializers cannot go this deep)."""
    opening = "".join("[" if i % 2 else '{"a":' for i in range(depth))
    closing = "".join("]" if i % 2 else "}" for i in reversed(range(depth)))
    return (opening + "1" + closing).encode()


def with_metadata(depth: int) -> bytes:
    return orjson.dumps(chat(metadata=0)).replace(b'"metadata":0', b'"metadata":' + nested(depth))


@pytest.mark.parametrize("depth", [200, 253, 300, 600, 1000])
async def test_deeply_nested_json_is_a_400_naming_the_problem(client: Client, depth: int) -> None:
    response = await client.post("/v1/chat/completions", content=with_metadata(depth), headers=OPEN)
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "levels deep" in error["message"]


async def test_ordinary_nesting_is_still_accepted(client: Client) -> None:
    response = await client.post("/v1/chat/completions", content=with_metadata(40), headers=OPEN)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", "true"),
        ("max_tokens", "10"),
        ("max_completion_tokens", "10"),
        ("temperature", "0.5"),
        ("top_p", "1"),
        ("n", "2"),
        ("n", True),
        ("logprobs", "true"),
        ("seed", "7"),
        ("presence_penalty", "0"),
        ("stream_options", {"include_usage": "yes"}),
    ],
)
async def test_loosely_typed_known_fields_are_rejected(client: Client, field: str, value: Any) -> None:
    extra: dict[str, Any] = {field: value}
    if field == "stream_options":
        extra["stream"] = True
    response = await client.post("/v1/chat/completions", json=chat(**extra), headers=OPEN)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    expected = "stream_options.include_usage" if field == "stream_options" else field
    assert error["param"] == expected
    assert error["type"] == "invalid_request_error"


async def test_well_typed_numbers_still_pass(client: Client) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat(temperature=1, top_p=0.5, max_tokens=10, n=1), headers=OPEN
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("headers", "status"), [(OPEN, 404), (NARROW, 403)])
async def test_a_huge_model_name_is_not_echoed_whole(
    client: Client, headers: dict[str, str], status: int, caplog: pytest.LogCaptureFixture
) -> None:
    model = "fast/" + "m" * 1_000_000
    with caplog.at_level(logging.INFO, logger="ultra_gateway.access"):
        response = await client.post("/v1/chat/completions", json=chat(model=model), headers=headers)
    assert response.status_code == status, response.text[:300]
    assert len(response.content) < 2_000
    assert "…" in response.json()["error"]["message"]
    access = [r.getMessage() for r in caplog.records if r.name == "ultra_gateway.access"]
    assert access
    assert all(len(line) < 2_000 for line in access)
    retrieved = await client.get("/v1/models/" + "m" * 60_000, headers=OPEN)
    assert retrieved.status_code == 404
    assert len(retrieved.content) < 2_000


async def test_model_ids_are_percent_decoded_once(client: Client) -> None:
    assert (await client.get("/v1/models/fast%2Fecho", headers=OPEN)).status_code == 200
    assert (await client.get("/v1/models/fast/echo", headers=OPEN)).status_code == 200
    # '%252F' is a literal '%2F' after one decoding: no model has that id.
    response = await client.get("/v1/models/fast%252Fecho", headers=OPEN)
    assert response.status_code == 404, response.text
    assert "fast%2Fecho" in response.json()["error"]["message"]
