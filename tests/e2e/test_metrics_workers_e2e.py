"""`/metrics` with `serve --workers 2`: whichever worker a scrape reaches, the totals are those of the whole
server (each worker's snapshot, summed), so they equal the requests sent."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from tests._gateway_process import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

CONFIG = """
providers:
  - name: mock
    kind: mock
    models:
      - {id: fast, latency_ms: 20, reply: "fast", input_cost_per_mtok: 1000000}
auth:
  keys:
    - {name: team-a, key: sk-a}
"""
SERIES = re.compile(r'^ultra_requests_total\{model="mock/fast",strategy="direct",status="200"\} (\S+)$', re.M)
COST = re.compile(r'^ultra_spend_usd_total\{key="team-a",tenant="",model="mock/fast"\} (\S+)$', re.M)


def scrape(url: str) -> tuple[float, float]:
    with httpx.Client(timeout=10) as client:  # a fresh connection: any worker may take it
        text = client.get(f"{url}/metrics").text
    requests, cost = SERIES.search(text), COST.search(text)
    return (float(requests.group(1)) if requests else 0.0), (float(cost.group(1)) if cost else 0.0)


def test_two_workers_report_the_totals_of_both(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    sent, cost = 40, 0.0
    spend = 0.0
    with GatewayProcess(config, args=["--workers", "2"]) as gateway:
        for _ in range(sent):
            with httpx.Client(timeout=10) as client:
                response = client.post(
                    f"{gateway.base_url}/v1/chat/completions",
                    json={"model": "mock/fast", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"authorization": "Bearer sk-a"},
                )
            assert response.status_code == 200
            cost += float(response.headers["x-ultra-cost-usd"])
        # another worker's snapshot is at most half a second old: the totals converge, then every scrape, on
        # whichever worker, answers them
        deadline = time.monotonic() + 10
        agreeing = 0
        while agreeing < 12:
            assert time.monotonic() < deadline, "the totals never added up"
            requests, spend = scrape(gateway.base_url)
            agreeing = agreeing + 1 if requests == sent else 0
        assert spend == pytest.approx(cost)
