"""Runtime API keys end to end: created through one gateway process's admin API (and its CLI), usable on a second
process sharing the Redis within a second, refused there within a second of being revoked; only digests are
stored; rotation replaces the secret."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests._gateway_process import ROOT, GatewayProcess
from tests._redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(120)]

CONFIG = """
providers:
  - name: mock
    kind: mock
    models:
      - {id: fast, reply: "fast says {prompt}"}
      - {id: other, reply: "other says {prompt}"}
rate_limits: {timeout_s: 0.5}
auth:
  admin_key_env: TEST_ADMIN_KEY
  keys:
    - {name: static, key: sk-static}
"""
ADMIN = "admin-secret-for-tests"
BODY = {"model": "mock/fast", "messages": [{"role": "user", "content": "hi"}]}


def until(condition: Callable[[], bool], within_s: float) -> float:
    """Seconds until `condition` held; AssertionError if it did not within `within_s`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < within_s, f"not within {within_s}s"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def two(tmp_path: Path, redis_url: str) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG)
    env = {"REDIS_URL": redis_url, "TEST_ADMIN_KEY": ADMIN}
    with GatewayProcess(config, env) as a, GatewayProcess(config, env) as b:
        yield a, b


def test_a_key_created_on_one_process_works_on_the_other_and_dies_with_revoke(
    two: tuple[GatewayProcess, GatewayProcess], redis_session: RedisServer
) -> None:
    a, b = two
    admin = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(timeout=10) as client:
        # the admin API wants the admin key, not a client key
        assert client.get(f"{a.base_url}/admin/keys", headers={"authorization": "Bearer sk-static"}).status_code == 401
        created = client.post(
            f"{a.base_url}/admin/keys",
            headers=admin,
            json={"name": "runtime-1", "tenant": "acme", "models": ["mock/fast"], "rpm": 100},
        )
        assert created.status_code == 201, created.text
        secret = created.json()["key"]
        assert secret.startswith("sk-ugw-")
        key = {"authorization": f"Bearer {secret}"}

        def works_on_b() -> bool:
            return client.post(f"{b.base_url}/v1/chat/completions", json=BODY, headers=key).status_code == 200

        assert until(works_on_b, 1.0) < 1.0
        # the key's own rules apply
        other = client.post(f"{b.base_url}/v1/chat/completions", json={**BODY, "model": "mock/other"}, headers=key)
        assert other.status_code == 403
        # only the digest is in Redis
        dump = redis_session.command("KEYS", "*keys*").decode()
        assert "keys" in dump
        raw = redis_session.command("HGETALL", "ugw:keys:{keys}:by_digest").decode()
        assert secret not in raw
        assert hashlib.sha256(secret.encode()).hexdigest() in raw
        # listed without a secret, next to the static key
        listed = client.get(f"{b.base_url}/admin/keys", headers=admin).json()["data"]
        assert {(k["name"], k["source"]) for k in listed} == {("static", "config"), ("runtime-1", "runtime")}
        assert secret not in json.dumps(listed)
        # a name taken by the file is refused; so is revoking a key of the file
        assert client.post(f"{a.base_url}/admin/keys", headers=admin, json={"name": "static"}).status_code == 400
        assert client.delete(f"{a.base_url}/admin/keys/static", headers=admin).status_code == 400
        # revoke on a: refused on b within a second
        assert client.delete(f"{a.base_url}/admin/keys/runtime-1", headers=admin).status_code == 200
        assert until(lambda: not works_on_b(), 1.0) < 1.0
        refused = client.post(f"{b.base_url}/v1/chat/completions", json=BODY, headers=key)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"


def test_the_cli_creates_rotates_and_revokes(two: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = two
    env = {**os.environ, "TEST_ADMIN_KEY": ADMIN}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "keys", *args, "--url", a.base_url, "--admin-key-env", "TEST_ADMIN_KEY"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    made = cli("create", "ci-bot", "--budget-usd", "5", "--budget-period", "day", "--expires-in-days", "1")
    assert made.returncode == 0, made.stderr
    first = json.loads(made.stdout)["key"]
    assert json.loads(made.stdout)["budget"] == {"usd": 5.0, "period": "day"}
    with httpx.Client(timeout=10) as client:

        def status(secret: str) -> int:
            headers = {"authorization": f"Bearer {secret}"}
            return client.post(f"{b.base_url}/v1/chat/completions", json=BODY, headers=headers).status_code

        until(lambda: status(first) == 200, 1.0)
        rotated = cli("rotate", "ci-bot")
        assert rotated.returncode == 0, rotated.stderr
        second = json.loads(rotated.stdout)["key"]
        assert second != first
        until(lambda: status(second) == 200 and status(first) == 401, 1.0)
        listed = cli("list")
        assert listed.returncode == 0
        assert "ci-bot" in listed.stdout
        assert second not in listed.stdout
        assert cli("revoke", "ci-bot").returncode == 0
        until(lambda: status(second) == 401, 1.0)
        missing = cli("revoke", "ci-bot")
        assert missing.returncode == 1
        assert "ci-bot" in missing.stderr


def test_an_expired_runtime_key_is_refused(two: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, _ = two
    admin = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(timeout=10) as client:
        made = client.post(
            f"{a.base_url}/admin/keys", headers=admin, json={"name": "old", "expires_at": time.time() - 1}
        )
        assert made.status_code == 201
        response = client.post(
            f"{a.base_url}/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {made.json()['key']}"}
        )
        assert response.status_code == 401
        assert "expired" in response.json()["error"]["message"]
