"""The HTTP edge in-process: OpenAI error shapes everywhere, request ids, body limit, SSE framing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from litestar.testing import AsyncTestClient

from gateway.builder import build_gateway
from gateway.config import parse_settings
from gateway.core.pool import Deployment, ProviderPool
from gateway.core.provider import CallOptions, Capabilities
from gateway.core.types import ChatRequest, ChatResponse
from gateway.http.app import create_app

CONFIG = """
server: {max_body_bytes: 2048}
providers:
  - name: fast
    kind: mock
    models:
      - {id: echo, input_cost_per_mtok: 1.0, output_cost_per_mtok: 2.0, reply: "echo: {prompt}"}
  - name: other
    kind: mock
    models: [{id: echo2}]
"""
USER = [{"role": "user", "content": "hello world"}]


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(parse_settings(CONFIG, env={}))
    async with AsyncTestClient(app=app) as test_client:  # type: ignore[arg-type]
        yield test_client


def assert_openai_error(response: Any, status: int, code: str | None = None, param: str | None = None) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param


async def test_completion_has_alias_model_summed_usage_metadata_and_headers(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "echo", "messages": USER})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "echo"
    assert body["choices"][0]["message"]["content"] == "echo: hello world"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    meta = body["ultra"]
    assert meta["strategy"] == "direct"
    assert [(c["provider"], c["model"], c["role"], c["status"]) for c in meta["calls"]] == [
        ("fast", "echo", "attempt", "ok")
    ]
    assert response.headers["x-ultra-providers"] == "fast/echo"
    assert response.headers["x-ultra-strategy"] == "direct"
    assert float(response.headers["x-ultra-cost-usd"]) == pytest.approx(meta["cost_usd"], abs=1e-8)
    assert response.headers["x-request-id"].startswith("req_")


async def test_client_request_id_is_echoed_when_sane(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/health/live", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    response = await client.get("/health/live", headers={"x-request-id": "bad id\twith spaces"})
    assert response.headers["x-request-id"].startswith("req_")


async def test_stream_is_sse_with_usage_chunk_and_done(client: AsyncTestClient[Any]) -> None:
    payload = {"model": "fast/echo", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    response = await client.post("/v1/chat/completions", json=payload)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"]
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    assert all(c["model"] == "fast/echo" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "echo: hello world"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("role")) == 1
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] > 0
    assert last["ultra"]["calls"][0]["status"] == "ok"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_stream_without_include_usage_sends_no_usage(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "echo", "messages": USER, "stream": True})
    chunks = [orjson.loads(e[6:]) for e in response.text.split("\n\n") if e and e != "data: [DONE]"]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "ultra" in chunks[-1]


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", None),
        (b'{"model": "echo"}', "messages"),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(client: AsyncTestClient[Any], content: bytes, param: str) -> None:
    response = await client.post("/v1/chat/completions", content=content)
    assert_openai_error(response, 400, param=param)


async def test_unknown_model_and_reserved_alias_are_404(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "nope/nothing", "messages": USER})
    assert_openai_error(response, 404, code="model_not_found", param="model")
    response = await client.get("/v1/models/nope")
    assert_openai_error(response, 404, code="model_not_found")


async def test_framework_errors_are_openai_shaped(client: AsyncTestClient[Any]) -> None:
    assert_openai_error(await client.get("/v2/anything"), 404, code="not_found")
    assert_openai_error(await client.get("/v1/chat/completions"), 405, code="method_not_allowed")


async def test_body_over_the_limit_is_413(client: AsyncTestClient[Any]) -> None:
    big = {"model": "echo", "messages": [{"role": "user", "content": "x" * 4096}]}
    assert_openai_error(await client.post("/v1/chat/completions", json=big), 413, code="request_too_large")


async def test_models_list_and_retrieve(client: AsyncTestClient[Any]) -> None:
    listing = (await client.get("/v1/models")).json()
    ids = [m["id"] for m in listing["data"]]
    assert listing["object"] == "list"
    assert {"fast/echo", "other/echo2", "ultra-simple", "ultra-adaptive"} <= set(ids)
    for path in ("/v1/models/fast/echo", "/v1/models/fast%2Fecho"):
        model = (await client.get(path)).json()
        openai_fields = {k: model[k] for k in ("id", "object", "created", "owned_by")}
        assert openai_fields == {"id": "fast/echo", "object": "model", "created": model["created"], "owned_by": "fast"}
        assert model["ultra"] == {"type": "deployment"}


async def test_health(client: AsyncTestClient[Any]) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


class _Broken:
    """A provider with a bug in it (not an upstream failure): the gateway must answer 500 without details."""

    name, kind, system, capabilities = "broken", "openai", "openai", Capabilities()

    async def complete(self, request: ChatRequest, *, model: str, options: CallOptions) -> ChatResponse:
        raise RuntimeError("secret internals")

    def stream(self, request: ChatRequest, *, model: str, options: CallOptions) -> Any:
        raise RuntimeError("secret internals")

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("stream", [False, True])
async def test_a_bug_is_a_500_naming_only_the_request_id(stream: bool, caplog: pytest.LogCaptureFixture) -> None:
    settings = parse_settings(CONFIG, env={})
    pool = ProviderPool([Deployment(_Broken(), "bug")])  # type: ignore[arg-type]
    app = create_app(settings, gateway=build_gateway(settings, pool=pool))
    async with AsyncTestClient(app=app) as client:  # type: ignore[arg-type]
        response = await client.post(
            "/v1/chat/completions", json={"model": "broken/bug", "messages": USER, "stream": stream}
        )
    assert_openai_error(response, 500)
    request_id = response.headers["x-request-id"]
    assert request_id in response.json()["error"]["message"]
    assert "secret internals" not in response.text
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)  # the stack trace is logged
