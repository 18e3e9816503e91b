"""`POST /v1/feedback` in-process: a score for a request ultra-adaptive served reaches its posteriors; bad bodies
and unknown ids get OpenAI-shaped errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.config import parse_settings
from gateway.http.app import create_app

CONFIG = """
providers:
  - name: m
    kind: mock
    models: [{id: a, reply: "Answer: 1"}, {id: b, reply: "Answer: 1"}]
"""
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(parse_settings(CONFIG, env={}))
    async with AsyncTestClient(app=app) as test_client:  # type: ignore[arg-type]
        yield test_client


async def test_a_score_for_an_adaptive_request_is_recorded_once(client: AsyncTestClient[Any]) -> None:
    answered = await client.post("/v1/chat/completions", json={"model": "ultra-adaptive", "messages": USER})
    assert answered.status_code == 200
    request_id = answered.headers["x-request-id"]
    recorded = await client.post("/v1/feedback", json={"request_id": request_id, "score": 1})
    assert recorded.status_code == 200
    assert recorded.json()["recorded"] is True
    again = await client.post("/v1/feedback", json={"request_id": request_id, "score": 1})
    assert again.status_code == 404
    assert again.json()["error"]["param"] == "request_id"


@pytest.mark.parametrize(
    ("body", "param"),
    [({"score": 1}, "request_id"), ({"request_id": "x", "score": 2}, "score"), ({"request_id": "x"}, "score")],
)
async def test_bad_feedback_is_a_400_naming_the_field(client: AsyncTestClient[Any], body: Any, param: str) -> None:
    response = await client.post("/v1/feedback", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_feedback_for_a_request_no_learner_served_is_a_404(client: AsyncTestClient[Any]) -> None:
    answered = await client.post("/v1/chat/completions", json={"model": "m/a", "messages": USER})
    response = await client.post("/v1/feedback", json={"request_id": answered.headers["x-request-id"], "score": 0})
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
