"""Budgets end to end: two gateway processes sharing one real redis-server enforce a key's budget together,
under concurrent requests, with no overrun beyond what one request may hold; `GET /v1/usage` reports the spend,
and `/metrics` counts it per key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests._gateway_process import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(120)]

# Prices that make every token cost a dollar (input) or two (output): costs are whole numbers, easy to check.
CONFIG = """
providers:
  - name: mock
    kind: mock
    models:
      - {id: paid, latency_ms: 50, input_cost_per_mtok: 1000000, output_cost_per_mtok: 2000000, reply: "ok"}
rate_limits: {timeout_s: 0.5}
auth:
  keys:
    - {name: capped, key: sk-capped, tenant: acme, budget: {usd: 300, period: day}}
    - {name: teammate, key: sk-teammate, tenant: acme}
  tenants:
    acme: {budget: {usd: 1000, period: month}}
"""
CAPPED = {"authorization": "Bearer sk-capped"}
BODY = {"model": "mock/paid", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


async def test_two_processes_enforce_one_budget_under_concurrency(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    env = {"REDIS_URL": redis_url}
    with GatewayProcess(config, env) as a, GatewayProcess(config, env) as b:
        async with httpx.AsyncClient(timeout=20) as client:
            urls = [a.base_url, b.base_url]

            async def one(i: int) -> httpx.Response:
                return await client.post(f"{urls[i % 2]}/v1/chat/completions", json=BODY, headers=CAPPED)

            responses = await asyncio.gather(*(one(i) for i in range(60)))
            ok = [r for r in responses if r.status_code == 200]
            refused = [r for r in responses if r.status_code == 429]
            assert ok
            assert refused
            assert len(ok) + len(refused) == 60
            assert {r.json()["error"]["code"] for r in refused} == {"budget_exceeded"}
            assert all(r.headers["x-ratelimit-limit-budget-usd"] == "300" for r in refused)
            assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
            hold = float(ok[0].headers["x-ratelimit-limit-budget-usd"]) - float(
                max(ok, key=lambda r: float(r.headers["x-ratelimit-remaining-budget-usd"])).headers[
                    "x-ratelimit-remaining-budget-usd"
                ]
            )
            assert len(ok) >= 300 // hold  # at least as many as fit with every hold charged at once
            spent = sum(float(r.headers["x-ultra-cost-usd"]) for r in ok)
            assert 0 < spent <= 300  # each request cost no more than its hold: the budget is never passed

            async def settled() -> None:
                """Until every hold has been replaced by its real cost (settlements are batched, in the background)."""
                for _ in range(500):
                    left = (await client.get(f"{b.base_url}/v1/usage", headers=CAPPED)).json()
                    if left["key"]["periods"]["day"]["in_flight_usd"] == 0:
                        return
                    await asyncio.sleep(0.01)
                raise AssertionError("holds were never settled")

            # one at a time, alternating processes, until refused: the real costs have replaced the holds, so the
            # refusal comes exactly when what is left no longer covers one hold
            await settled()
            for i in range(100):
                response = await one(i)
                if response.status_code == 429:
                    break
                spent += float(response.headers["x-ultra-cost-usd"])
                await settled()
            assert response.status_code == 429
            assert spent <= 300
            assert 300 - spent < hold + 1e-6

            async def usage() -> dict[str, object]:
                return (await client.get(f"{b.base_url}/v1/usage", headers=CAPPED)).json()  # type: ignore[no-any-return]

            # settlements are written in the background: wait until the holds are replaced by the real costs
            for _ in range(200):
                report = await usage()
                day = report["key"]["periods"]["day"]  # type: ignore[index]
                if day["in_flight_usd"] == 0:
                    break
                await asyncio.sleep(0.02)
            assert day["spent_usd"] == pytest.approx(spent)
            assert day["budget_usd"] == 300
            assert day["remaining_usd"] == pytest.approx(300 - spent)
            tenant = report["tenant"]  # type: ignore[index]
            assert tenant["name"] == "acme"
            assert tenant["periods"]["month"]["spent_usd"] == pytest.approx(spent)
            assert tenant["periods"]["month"]["budget_usd"] == 1000
            # the teammate shares the tenant's budget, not the capped key's
            mate = await client.post(
                f"{a.base_url}/v1/chat/completions", json=BODY, headers={"authorization": "Bearer sk-teammate"}
            )
            assert mate.status_code == 200
            assert mate.headers["x-ultra-budget-scope"] == "tenant;period=month"
            metrics = (await client.get(f"{a.base_url}/metrics")).text
            assert 'ultra_spend_usd_total{key="capped",tenant="acme",model="mock/paid"}' in metrics
            assert "ultra_budget_rejections_total" in metrics
