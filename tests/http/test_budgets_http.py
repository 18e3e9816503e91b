"""Budgets and the usage route through the HTTP edge, in-process, on the memory backend: the headers on whole
answers and streams, the 429 when the hold no longer fits, `GET /v1/usage`, and a cache hit costing nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests._app import in_process

CONFIG = """
providers:
  - name: paid
    kind: mock
    models:
      - {id: m, input_cost_per_mtok: 1000000, output_cost_per_mtok: 1000000, reply: "ok"}
auth:
  keys:
    - {name: capped, key: sk-capped, tenant: acme, budget: {usd: 100, period: day}}
    - {name: free, key: sk-free}
  tenants:
    acme: {budget: {usd: 1000, period: rolling_24h}}
"""
CAPPED = {"authorization": "Bearer sk-capped"}
FREE = {"authorization": "Bearer sk-free"}


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "paid/m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(CONFIG) as c:
        yield c


async def settle(client: httpx.AsyncClient) -> dict[str, Any]:
    for _ in range(200):
        usage: dict[str, Any] = (await client.get("/v1/usage", headers=CAPPED)).json()
        if usage["key"]["periods"]["day"]["in_flight_usd"] == 0:
            return usage
        await asyncio.sleep(0.005)
    raise AssertionError("never settled")


async def test_budget_headers_refusal_and_usage(client: httpx.AsyncClient) -> None:
    first = await client.post("/v1/chat/completions", json=chat(), headers=CAPPED)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-budget-usd"] == "100"
    assert first.headers["x-ultra-budget-scope"] == "key;period=day"
    assert "x-ratelimit-reset-budget" in first.headers
    cost = float(first.headers["x-ultra-cost-usd"])
    hold = 100 - float(first.headers["x-ratelimit-remaining-budget-usd"])
    assert 0 < cost <= hold
    # a stream carries the same headers
    async with client.stream("POST", "/v1/chat/completions", json=chat(stream=True), headers=CAPPED) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["x-ratelimit-limit-budget-usd"] == "100"
        async for _ in streamed.aiter_bytes():
            pass
    usage = await settle(client)
    spent = usage["key"]["periods"]["day"]["spent_usd"]
    assert spent == pytest.approx(2 * cost)
    assert usage["key"]["periods"]["month"]["spent_usd"] == pytest.approx(2 * cost)
    assert usage["tenant"]["periods"]["rolling_24h"]["budget_usd"] == 1000
    # a request whose hold cannot fit: 429 budget_exceeded, before any upstream call
    big = await client.post("/v1/chat/completions", json=chat(max_tokens=200), headers=CAPPED)
    assert big.status_code == 429
    error = big.json()["error"]
    assert (error["code"], error["type"]) == ("budget_exceeded", "insufficient_quota")
    assert "key 'capped'" in error["message"]
    assert "sk-capped" not in error["message"]
    assert float(big.headers["x-ratelimit-remaining-budget-usd"]) == pytest.approx(100 - spent)
    assert int(big.headers["retry-after"]) >= 1
    assert (await settle(client))["key"]["periods"]["day"]["spent_usd"] == pytest.approx(spent)
    # a key without a budget has no budget headers, but its spend is still counted
    free = await client.post("/v1/chat/completions", json=chat(), headers=FREE)
    assert free.status_code == 200
    assert "x-ratelimit-limit-budget-usd" not in free.headers
    metrics = (await client.get("/metrics")).text
    assert 'ultra_budget_rejections_total{scope="key",period="day"} 1' in metrics


async def test_usage_needs_a_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/usage")).status_code == 401


async def test_embeddings_count_against_the_budget(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/embeddings", json={"model": "paid/m", "input": ["a b c"]}, headers=CAPPED)
    assert response.status_code == 200, response.text
    assert response.headers["x-ratelimit-limit-budget-usd"] == "100"
    cost = response.json()["usage"]["prompt_tokens"]  # one USD per input token at these prices
    assert cost > 0
    usage = await settle(client)
    assert usage["key"]["periods"]["day"]["spent_usd"] == pytest.approx(cost)
    assert usage["tenant"]["periods"]["month"]["spent_usd"] == pytest.approx(cost)
