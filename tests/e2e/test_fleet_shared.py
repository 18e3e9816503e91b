"""Fleet state shared through a real redis-server by real gateway processes: a breaker one process opened keeps
the other from calling the dead upstream at all, and what `ultra-adaptive` learned survives a restart."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._gateway_process import GatewayProcess
from tests._redis import RedisServer
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(120)]

CONFIG = """
cache: {{enabled: false}}
fleet: {{sync_interval_s: 0.1}}
providers:
  - name: dead
    kind: openai
    base_url: {url}
    max_retries: 2
    breaker: {{failure_threshold: 3, cooldown_s: 60}}
    models: [{{id: status-500}}]
  - name: mock
    kind: mock
    models:
      - {{id: cheap, input_cost_per_mtok: 0.1, output_cost_per_mtok: 0.1, quality: 0.6, reply: "ok {{prompt}}"}}
strategies:
  ultra-learn: {{kind: adaptive, arms: [cost]}}
"""
CHAT = {"model": "dead/status-500", "messages": [{"role": "user", "content": "hello"}]}


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    """Poll a condition under a bounded deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s}s"
        time.sleep(0.05)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
def config_file(tmp_path: Path, fake: FakeOpenAI) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(url=fake.url))
    return path


def test_a_second_process_skips_the_upstream_the_first_found_dead(
    config_file: Path, redis_url: str, fake: FakeOpenAI
) -> None:
    env = {"REDIS_URL": redis_url}
    with GatewayProcess(config_file, env) as a, GatewayProcess(config_file, env) as b, httpx.Client(timeout=10) as c:
        assert c.post(f"{a.base_url}/v1/chat/completions", json=CHAT).status_code == 502
        assert len(fake.bodies_for("status-500")) == 3  # a's three tries opened the breaker

        def b_knows() -> bool:
            return 'ultra_circuit_breaker_open{deployment="dead/status-500"} 1' in c.get(f"{b.base_url}/metrics").text

        wait_for(b_knows, what="the open breaker reaching the second process")
        refused = c.post(f"{b.base_url}/v1/chat/completions", json=CHAT)
        assert refused.status_code == 503  # b's first request: skipped without a call
        assert 50 <= int(refused.headers["retry-after"]) <= 60
        assert len(fake.bodies_for("status-500")) == 3


def _posterior_mean(redis: RedisServer, bucket: str) -> float:
    def evidence(side: str) -> float:
        reply = redis.command("HGET", "ugw{fleet}:posteriors", f"ultra-learn|{bucket}|cost|{side}")
        return float(reply.split(b"\r\n")[1])

    alpha, beta = 1 + evidence("a"), 1 + evidence("b")
    return alpha / (alpha + beta)


def test_adaptive_posteriors_survive_a_restart(config_file: Path, redis_session: RedisServer, redis_url: str) -> None:
    env = {"REDIS_URL": redis_url}
    body: dict[str, Any] = {"model": "ultra-learn", "messages": [{"role": "user", "content": "hello"}]}
    with GatewayProcess(config_file, env) as first, httpx.Client(timeout=10) as c:
        reason = ""
        for _ in range(10):
            reason = c.post(f"{first.base_url}/v1/chat/completions", json=body).json()["ultra"]["reason"]
        bucket = re.search(r" in (\S+)$", reason)
        assert bucket is not None, reason

        def stored() -> bool:
            reply = redis_session.command("HGET", "ugw{fleet}:posteriors", f"ultra-learn|{bucket.group(1)}|cost|a")
            return not reply.startswith(b"$-1") and _posterior_mean(redis_session, bucket.group(1)) > 0.5

        wait_for(stored, what="ten requests' evidence in Redis")
    learned = _posterior_mean(redis_session, bucket.group(1))
    with GatewayProcess(config_file, env) as restarted, httpx.Client(timeout=10) as c:
        reason = c.post(f"{restarted.base_url}/v1/chat/completions", json=body).json()["ultra"]["reason"]
    mean = re.search(r"posterior mean ([0-9.]+)", reason)
    assert mean is not None, reason
    # the fresh process starts from what the fleet learned (ten rewards), not from the 0.50 prior
    assert float(mean.group(1)) == pytest.approx(learned, abs=0.006)
    assert float(mean.group(1)) > 0.55
