"""Issue 2 end to end: the real gateway as a subprocess, the real `openai` SDK as the client, and a fake
OpenAI-compatible upstream on loopback that the tests own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests._gateway_process import ROOT, GatewayProcess
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SECRET = "sk-upstream-e2e-SECRET-0123456789"
USER = [{"role": "user", "content": "hello gateway"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def config_text(fake: FakeOpenAI) -> str:
    return f"""
server: {{max_body_bytes: 4096, request_timeout_s: 10, shutdown_grace_s: 10}}
providers:
  - name: up
    kind: openai
    base_url: {fake.url}
    api_key_env: E2E_UPSTREAM_KEY
    max_retries: 1
    timeout: {{connect_s: 2, read_s: 1, total_s: 3}}
    models:
      - {{id: echo, input_cost_per_mtok: 1.0, output_cost_per_mtok: 2.0}}
      - {{id: dupids}}
      - {{id: hang}}
      - {{id: badjson}}
      - {{id: cut}}
      - {{id: flaky}}
      - {{id: ratelimit}}
      - {{id: status-500}}
      - {{id: status-401}}
      - {{id: slow-800}}
fallbacks:
  up/status-500: [up/echo]
cache: {{enabled: false}}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = tmp_path_factory.mktemp("foundation") / "gateway.yaml"
    config.write_text(config_text(fake))
    with GatewayProcess(config, env={"E2E_UPSTREAM_KEY": SECRET}) as process:
        yield process
    assert not any(SECRET in line for line in process.lines), "the upstream key reached a log line"


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="unused", max_retries=0, timeout=20)


def test_non_streaming_passthrough_keeps_every_field_and_names_the_model_asked(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}
    reply = client.chat.completions.create(
        model="up/echo",
        messages=USER,
        n=2,
        logprobs=True,
        top_logprobs=1,
        seed=42,
        response_format=schema,
        extra_body={"vendor_knob": {"deep": [1, 2, 3]}},
    )
    assert reply.model == "up/echo"
    assert [c.message.content for c in reply.choices] == ["echo: hello gateway", "echo: hello gateway"]
    assert reply.choices[0].logprobs is not None
    assert reply.usage is not None
    assert reply.usage.total_tokens == 10
    sent = fake.bodies_for("echo")[-1]
    assert sent["vendor_knob"] == {"deep": [1, 2, 3]}
    assert (sent["n"], sent["logprobs"], sent["top_logprobs"], sent["seed"]) == (2, True, 1, 42)
    assert sent["response_format"] == schema
    assert fake.headers[-1]["Authorization"] == f"Bearer {SECRET}"
    meta = reply.model_extra["ultra"]
    assert meta["calls"][0]["provider"] == "up"
    assert meta["cost_usd"] > 0


def test_tools_pass_through_and_come_back(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    reply = client.chat.completions.create(model="up/echo", messages=USER, tools=[TOOL], tool_choice="auto")
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.choices[0].message.tool_calls is not None
    assert reply.choices[0].message.tool_calls[0].function.name == "lookup"
    assert fake.bodies_for("echo")[-1]["tools"] == [TOOL]


def test_streaming_with_include_usage_ends_with_the_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="up/echo", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == "echo: hello gateway"
    assert all(c.model == "up/echo" for c in chunks)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 10
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_streaming_without_include_usage_sends_no_usage(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    chunks = list(client.chat.completions.create(model="up/echo", messages=USER, stream=True))
    assert all(c.usage is None for c in chunks)
    # the gateway still asks the upstream for usage, to bill and rate-limit on real numbers
    assert fake.bodies_for("echo")[-1]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("model", ["up/echo", "up/dupids"])
def test_tool_call_deltas_as_the_sdk_expects(client: openai.OpenAI, model: str) -> None:
    with client.chat.completions.stream(model=model, messages=USER, tools=[TOOL]) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].id == "call_s1"  # never "call_s1call_s1call_s1", even when the upstream repeats it
    assert calls[0].function.name == "lookup"
    assert orjson.loads(calls[0].function.arguments) == {"q": 1}
    assert final.choices[0].finish_reason == "tool_calls"


def test_bare_model_id_routes_to_its_only_provider(client: openai.OpenAI) -> None:
    response = client.chat.completions.with_raw_response.create(model="echo", messages=USER)
    assert response.parse().model == "echo"
    assert response.headers["x-ultra-providers"] == "up/echo"


def test_fallback_after_the_primary_fails(client: openai.OpenAI) -> None:
    response = client.chat.completions.with_raw_response.create(model="up/status-500", messages=USER)
    completion = response.parse()
    assert completion.choices[0].message.content == "echo: hello gateway"
    assert response.headers["x-ultra-providers"] == "up/echo"
    calls = completion.model_extra["ultra"]["calls"]
    assert [(c["model"], c["status"]) for c in calls] == [("status-500", "error"), ("echo", "ok")]
    assert SECRET not in calls[0]["error"]


def test_retry_after_is_honoured_and_the_retry_succeeds(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    before = len(fake.bodies_for("flaky"))
    reply = client.chat.completions.create(model="up/flaky", messages=USER)
    assert reply.choices[0].message.content == "echo: hello gateway"
    assert len(fake.bodies_for("flaky")) - before == 2


def test_every_attempt_rate_limited_is_a_429_with_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="up/ratelimit", messages=USER)
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.response.headers["retry-after-ms"] == "20"


def test_all_failed_is_502_listing_the_provider_without_secrets(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="up/status-401", messages=USER)
    assert caught.value.status_code == 502
    assert "up/status-401" in caught.value.message
    assert SECRET not in caught.value.message
    assert caught.value.request_id


def test_hung_upstream_is_a_504_within_the_timeout(client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="up/hang", messages=USER)
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 3.5  # provider total_s: 3


def test_invalid_json_from_upstream_is_a_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="up/badjson", messages=USER)
    assert caught.value.status_code == 502
    assert "not JSON" in caught.value.message


def test_a_stream_cut_mid_way_raises_in_the_sdk_and_the_next_request_works(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="up/cut", messages=USER, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    assert client.chat.completions.create(model="up/echo", messages=USER).choices[0].message.content


def test_request_errors_are_openai_shaped_with_request_ids(gateway: GatewayProcess) -> None:
    url = gateway.base_url
    with httpx.Client(timeout=10) as http:
        cases: list[tuple[httpx.Response, int, str | None]] = [
            (http.post(f"{url}/v1/chat/completions", content=b"{nope"), 400, None),
            (http.post(f"{url}/v1/chat/completions", json={"model": "up/echo"}), 400, "messages"),
            (http.post(f"{url}/v1/chat/completions", json={"model": "nope/nothing", "messages": USER}), 404, "model"),
            (
                http.post(
                    f"{url}/v1/chat/completions",
                    json={"model": "up/echo", "messages": [{"role": "user", "content": "x" * 8000}]},
                ),
                413,
                None,
            ),
            (http.get(f"{url}/no/such/path"), 404, None),
        ]
        for response, status, param in cases:
            assert response.status_code == status
            assert response.headers["x-request-id"]
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["param"] == param
        assert http.get(f"{url}/health/live").status_code == 200
        assert http.get(f"{url}/health/ready").json()["status"] == "ready"
        models = {m["id"] for m in http.get(f"{url}/v1/models").json()["data"]}
        assert {"up/echo", "ultra-simple", "ultra-speed"} <= models


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ULTRA_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_check_config_and_serve_refuse_a_bad_file_with_paths(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("providers: [{name: m, kind: mock, models: [{id: a}]}]\n")
    assert run_cli("check-config", str(good)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "providers:\n  - {name: m, kind: mock, models: [{id: a}]}\n"
        "  - {name: o, kind: openai, base_url: 'ftp://x', models: [{id: b, quality: 7}]}\n"
    )
    checked = run_cli("check-config", str(bad))
    assert checked.returncode == 2
    assert "providers[1].base_url: must be an http:// or https:// URL" in checked.stderr
    assert "providers[1].models[0].quality:" in checked.stderr
    served = run_cli("serve", "--config", str(bad), "--port", "0")
    assert served.returncode == 2
    assert "Uvicorn running" not in served.stderr  # refused before binding
    assert "providers[1].base_url" in served.stderr


def test_sigterm_lets_an_in_flight_request_finish(fake: FakeOpenAI, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(fake))
    result: dict[str, Any] = {}
    with GatewayProcess(config, env={"E2E_UPSTREAM_KEY": SECRET}) as process:
        sdk = openai.OpenAI(base_url=process.base_url + "/v1", api_key="unused", max_retries=0, timeout=20)
        fake.received.clear()

        def call() -> None:
            try:
                result["content"] = (
                    sdk.chat.completions.create(model="up/slow-800", messages=USER).choices[0].message.content
                )
            except openai.APIError as exc:  # pragma: no cover - the assertion below reports it
                result["error"] = exc

        worker = threading.Thread(target=call)
        worker.start()
        assert fake.received.wait(10)  # the request is in flight at the upstream
        assert process.process is not None
        os.kill(process.process.pid, signal.SIGTERM)
        worker.join(20)
        assert result.get("content") == "echo: hello gateway", result
        assert process.process.wait(20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
