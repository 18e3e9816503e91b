"""Configuration reload end to end, with one worker and with two: SIGHUP (and `POST /admin/reload`) swap in a
changed file while requests keep flowing, none of them failing; a bad file keeps the running configuration, logs
one line with the errors (no traceback) and sets the reload metrics."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests._gateway_process import GatewayProcess
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

V1 = """
providers:
  - name: steady
    kind: mock
    models:
      - {id: base, latency_ms: 150, reply: "steady says {prompt}"}
  - name: changing
    kind: mock
    models:
      - {id: old, reply: "old"}
auth:
  keys:
    - {name: user, key: sk-user}
"""
V2 = V1.replace('{id: old, reply: "old"}', '{id: old, reply: "old"}\n      - {id: new, reply: "new"}')
BAD = V2 + "\nrate_limits: {rpm: -3, bogus: 1}\n"
USER = {"authorization": "Bearer sk-user"}


def ask(client: httpx.Client, url: str, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
    return client.post(f"{url}/v1/chat/completions", json=body, headers=USER).status_code


class Load:
    """Four threads asking `steady/base` (150 ms each) in a loop, on fresh connections, until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(4)]

    def _run(self) -> None:
        while not self.stop.is_set():
            with httpx.Client(timeout=10) as client:
                self.statuses.append(ask(client, self.url, "steady/base"))

    def wait_for(self, n: int, timeout_s: float = 15.0) -> None:
        """Until `n` requests of the load have been answered."""
        deadline = time.monotonic() + timeout_s
        while len(self.statuses) < n:
            assert time.monotonic() < deadline, f"the load answered {len(self.statuses)} of {n}"
            time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)


def count(gateway: GatewayProcess, wanted: Callable[[str], bool]) -> int:
    return sum(1 for line in list(gateway.lines) if wanted(line))


def wait_count(gateway: GatewayProcess, wanted: Callable[[str], bool], n: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while count(gateway, wanted) < n:
        assert time.monotonic() < deadline, "".join(gateway.lines[-30:])
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_under_load_and_a_bad_file_changes_nothing(tmp_path: Path, workers: int) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(V1)
    with GatewayProcess(config, args=["--workers", str(workers)]) as gateway:
        assert gateway.process is not None
        url = gateway.base_url
        reloaded = "config reloaded from"
        with httpx.Client(timeout=10) as client, Load(url) as load:
            load.wait_for(8)  # the load is running: requests are in flight when the signal comes
            assert ask(client, url, "changing/new") == 404
            config.write_text(V2)
            os.kill(gateway.process.pid, signal.SIGHUP)
            wait_count(gateway, lambda line: reloaded in line, workers)
            # every worker serves the new model; the unchanged provider kept its pool
            for _ in range(10):  # fresh connections, spread over the workers
                with httpx.Client(timeout=10) as fresh:
                    assert ask(fresh, url, "changing/new") == 200
            line = next(line for line in gateway.lines if reloaded in line)
            assert "kept providers steady" in line
            # a bad file: the old (v2) configuration keeps serving
            config.write_text(BAD)
            os.kill(gateway.process.pid, signal.SIGHUP)
            failed = "config reload failed"
            wait_count(gateway, lambda line: failed in line, workers)
            error_line = next(line for line in gateway.lines if failed in line)
            assert "rate_limits.rpm" in error_line
            assert "rate_limits.bogus: unknown key" in error_line
            assert ask(client, url, "changing/new") == 200
            load.wait_for(len(load.statuses) + 8)  # the load runs on after the refused reload
        assert load.statuses
        assert set(load.statuses) == {200}, sorted(set(load.statuses))
        assert not any("Traceback" in line for line in gateway.lines), "".join(gateway.lines[-40:])
        assert gateway.process.poll() is None  # still running
        # /metrics adds the workers up (each refused the file once); snapshots lag by at most half a second
        deadline = time.monotonic() + 10
        while f"ultra_config_reload_failures_total {workers}\n" not in (metrics := httpx.get(f"{url}/metrics").text):
            assert time.monotonic() < deadline, metrics[-600:]
            time.sleep(0.05)
        assert "ultra_config_last_reload_success 0\n" in metrics


def with_admin(text: str) -> str:
    return text.replace("auth:\n", "auth:\n  admin_key_env: TEST_ADMIN_KEY\n")


def test_admin_reload_reports_what_changed(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(with_admin(V1))
    with GatewayProcess(config, {"TEST_ADMIN_KEY": "adm"}) as gateway, httpx.Client(timeout=10) as client:
        admin = {"authorization": "Bearer adm"}
        config.write_text(with_admin(V2))
        answer = client.post(f"{gateway.base_url}/admin/reload", headers=admin)
        assert answer.status_code == 200
        body = answer.json()
        assert body["ok"] is True
        assert body["changed"] == ["providers"]
        assert body["kept_providers"] == ["steady"]
        config.write_text(with_admin(BAD))
        refused = client.post(f"{gateway.base_url}/admin/reload", headers=admin)
        assert refused.status_code == 422
        assert any("bogus" in e for e in refused.json()["errors"])
        assert client.post(f"{gateway.base_url}/admin/reload", headers=USER).status_code == 401
        assert ask(client, gateway.base_url, "changing/new") == 200


def test_a_request_in_flight_finishes_on_the_provider_a_reload_removes(tmp_path: Path) -> None:
    with FakeOpenAI() as upstream:
        config = tmp_path / "gateway.yaml"
        before = f"""
providers:
  - name: steady
    kind: mock
    models: [{{id: base}}]
  - name: leaving
    kind: openai
    base_url: {upstream.url}
    models: [{{id: slow-1500}}]
"""
        config.write_text(before)
        with GatewayProcess(config) as gateway:
            assert gateway.process is not None
            result: list[httpx.Response] = []
            body = {"model": "leaving/slow-1500", "messages": [{"role": "user", "content": "x"}]}
            thread = threading.Thread(
                target=lambda: result.append(
                    httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=20)
                ),
                daemon=True,
            )
            thread.start()
            assert upstream.received.wait(10)  # the call is at the upstream now
            config.write_text(before.split("  - name: leaving")[0])
            os.kill(gateway.process.pid, signal.SIGHUP)
            gateway.wait_for_line(lambda line: "config reloaded from" in line)
            with httpx.Client(timeout=10) as client:  # new requests see the new configuration at once
                assert client.post(f"{gateway.base_url}/v1/chat/completions", json=body).status_code == 404
            thread.join(timeout=20)
            assert result
            assert result[0].status_code == 200
