"""End to end: the real gateway (subprocess) in front of a fake Anthropic Messages server that this test owns,
with the real `openai` SDK as the client: plain, streaming, a full tool round trip, errors with retries, and a
fallback from the Anthropic kind to another provider kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from aiohttp import web

from tests._gateway_process import GatewayProcess
from tests.fakes.threaded import ThreadedApp

pytestmark = pytest.mark.e2e

KEY = "sk-ant-e2e-SECRET-0123456789"


class FakeAnthropic:
    """aiohttp server on 127.0.0.1 in its own thread. Behaviour by model: `claude-ok` answers (a tool_use when
    tools are offered and no tool result is in the history yet), `claude-flaky` fails with 529 once, then
    answers; `claude-down` always 529; `claude-bad` answers 400."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.flaky_failures = 0
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self.server = ThreadedApp(app)

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> FakeAnthropic:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def _error(self, status: int, kind: str, message: str) -> web.Response:
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return web.json_response(body, status=status, headers={"retry-after": "0"})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        model = body["model"]
        if model == "claude-down":
            return self._error(529, "overloaded_error", "Overloaded")
        if model == "claude-bad":
            return self._error(400, "invalid_request_error", "messages: roles must alternate")
        if model == "claude-flaky" and self.flaky_failures == 0:
            self.flaky_failures += 1
            return self._error(529, "overloaded_error", "Overloaded")
        has_result = any(
            isinstance(m["content"], list) and any(b.get("type") == "tool_result" for b in m["content"])
            for m in body["messages"]
        )
        if body.get("tools") and not has_result:
            blocks = [
                {"type": "tool_use", "id": "toolu_e2e", "name": body["tools"][0]["name"], "input": {"city": "Oslo"}}
            ]
            stop = "tool_use"
        else:
            blocks = [{"type": "text", "text": f"Claude says hi ({len(body['messages'])} turns)"}]
            stop = "end_turn"
        usage = {"input_tokens": 12, "cache_read_input_tokens": 3, "output_tokens": 5}
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "msg_e2e",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": blocks,
                    "stop_reason": stop,
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        async def send(event: dict[str, Any]) -> None:
            await response.write(b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")

        await send(
            {
                "type": "message_start",
                "message": {"id": "msg_e2e", "model": model, "usage": {**usage, "output_tokens": 1}},
            }
        )
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                await send({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
                for word in block["text"].split(" "):
                    await send(
                        {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": word + " "}}
                    )
            else:
                await send({"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}})
                await send(
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Oslo"}'},
                    }
                )
            await send({"type": "content_block_stop", "index": i})
        await send({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}})
        await send({"type": "message_stop"})
        return response


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def client(fake: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    config = tmp_path_factory.mktemp("anthropic") / "gateway.yaml"
    config.write_text(f"""
providers:
  - name: claude
    kind: anthropic
    base_url: {fake.url}/v1
    api_key_env: E2E_ANTHROPIC_KEY
    max_retries: 2
    timeout: {{connect_s: 2, read_s: 5, total_s: 10}}
    models:
      - {{id: claude-ok, input_cost_per_mtok: 3, output_cost_per_mtok: 15}}
      - {{id: claude-flaky}}
      - {{id: claude-down}}
      - {{id: claude-bad}}
  - name: local
    kind: mock
    models: [{{id: backup, reply: "backup answer"}}]
fallbacks:
  claude/claude-down: [local/backup]
""")
    with GatewayProcess(Path(config), env={"E2E_ANTHROPIC_KEY": KEY}) as gateway:
        yield openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="unused", max_retries=0, timeout=20)
        assert not any(KEY in line for line in gateway.lines), "the upstream key reached a log line"


USER = [{"role": "user", "content": "hello"}]


@pytest.mark.timeout(60)
def test_plain_completion_with_mapped_usage(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    reply = client.chat.completions.create(model="claude/claude-ok", messages=USER, temperature=0.2)
    assert reply.choices[0].message.content == "Claude says hi (1 turns)"
    assert reply.model == "claude/claude-ok"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 15  # input 12 + cache reads 3
    assert reply.usage.completion_tokens == 5
    assert fake.headers[-1]["x-api-key"] == KEY
    assert fake.headers[-1]["anthropic-version"] == "2023-06-01"
    assert fake.requests[-1]["max_tokens"] == 4096


@pytest.mark.timeout(60)
def test_streaming_assembles_and_reports_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="claude-ok", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "Claude says hi (1 turns)"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 15


WEATHER = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


@pytest.mark.timeout(60)
def test_full_tool_round_trip_streaming_with_the_sdk_helper(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    with client.chat.completions.stream(model="claude/claude-ok", messages=USER, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.id == "toolu_e2e"  # not concatenated by the SDK's accumulator
    assert call.function.name == "weather"
    assert orjson.loads(call.function.arguments) == {"city": "Oslo"}
    follow_up = client.chat.completions.create(
        model="claude/claude-ok",
        tools=[WEATHER],
        messages=[
            *USER,
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"},
        ],
    )
    assert follow_up.choices[0].message.content == "Claude says hi (3 turns)"
    sent = fake.requests[-1]["messages"]
    assert sent[1]["content"][0] == {
        "type": "tool_use",
        "id": "toolu_e2e",
        "name": "weather",
        "input": {"city": "Oslo"},
    }
    assert sent[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_e2e", "content": "Sunny, 21C"}],
    }


@pytest.mark.timeout(60)
def test_overloaded_is_retried(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    reply = client.chat.completions.create(model="claude/claude-flaky", messages=USER)
    assert reply.choices[0].message.content
    assert fake.flaky_failures == 1


@pytest.mark.timeout(60)
def test_fallback_from_anthropic_to_another_kind(client: openai.OpenAI) -> None:
    reply = client.chat.completions.with_raw_response.create(model="claude/claude-down", messages=USER)
    completion = reply.parse()
    assert completion.choices[0].message.content == "backup answer"
    assert reply.headers["x-ultra-providers"] == "local/backup"
    calls = completion.model_extra["ultra"]["calls"]
    assert [(c["provider"], c["status"]) for c in calls] == [("claude", "error"), ("local", "ok")]


@pytest.mark.timeout(60)
def test_upstream_bad_request_is_relayed_as_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude/claude-bad", messages=USER)
    assert "roles must alternate" in caught.value.message


@pytest.mark.timeout(60)
def test_unsupported_field_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude/claude-ok", messages=USER, n=2)
    assert caught.value.param == "n"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_anthropic_sdk_through_the_gateway_to_an_anthropic_deployment(
    client: openai.OpenAI, fake: FakeAnthropic, stream: bool
) -> None:
    """Messages in, chat through the pipeline, Messages out to the upstream and back: a whole tool loop."""
    claude = anthropic.Anthropic(
        base_url=str(client.base_url).rstrip("/").removesuffix("/v1"), api_key="unused", max_retries=0, timeout=20
    )
    tool = {"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]

    def ask() -> Any:
        if not stream:
            return claude.messages.create(model="claude/claude-ok", max_tokens=64, tools=[tool], messages=messages)
        with claude.messages.stream(model="claude/claude-ok", max_tokens=64, tools=[tool], messages=messages) as events:
            return events.get_final_message()

    first = ask()
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use"
    assert call.input == {"city": "Oslo"}
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12 C"}]},
    ]
    second = ask()
    assert second.stop_reason == "end_turn"
    assert second.content[0].text.startswith("Claude says hi (3 turns)")
    assert second.usage.cache_read_input_tokens == 3
    assert second.usage.input_tokens == 12  # the upstream's own count: cached tokens apart, as it reported them
    sent = fake.requests[-1]
    assert sent["tools"][0]["name"] == "weather"
    assert sent["messages"][-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12 C"}],
    }
