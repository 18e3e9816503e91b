"""End to end: the real gateway (subprocess) serving its other inbound APIs to the real SDKs, unchanged:
Anthropic's `messages.create` / `messages.stream` / `messages.count_tokens`, OpenAI's `responses.*` and
`embeddings.create`. Each runs against the mock fleet, a direct `provider/model` deployment on a fake
OpenAI-compatible upstream, and an `ultra-*` alias."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests._gateway_process import GatewayProcess
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.e2e

KEY = "sk-gateway-e2e-key"
UPSTREAM_SECRET = "sk-upstream-inbound-SECRET-0123456789"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1},
        },
        "required": ["city", "unit", "days"],
    },
}


def config_text(fake: FakeOpenAI) -> str:
    return f"""
server: {{request_timeout_s: 10}}
providers:
  - name: mock
    kind: mock
    models:
      - {{id: alpha, reply: "alpha says: {{prompt}}"}}
      - {{id: beta, reply: "beta says: {{prompt}}"}}
  - name: up
    kind: openai
    base_url: {fake.url}
    api_key_env: E2E_UPSTREAM_KEY
    max_retries: 0
    models:
      - {{id: echo}}
      - {{id: cut}}
strategies:
  ultra-waterfall: {{kind: waterfall, chain: [mock/alpha, mock/beta]}}
cache: {{enabled: false}}
auth:
  keys:
    - {{name: e2e, key: {KEY}}}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = tmp_path_factory.mktemp("inbound") / "gateway.yaml"
    config.write_text(config_text(fake))
    with GatewayProcess(config, env={"E2E_UPSTREAM_KEY": UPSTREAM_SECRET}) as process:
        yield process
    assert not any(UPSTREAM_SECRET in line for line in process.lines), "the upstream key reached a log line"


@pytest.fixture(scope="module")
def claude(gateway: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0, timeout=20)


# --- Anthropic Messages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock/alpha", "up/echo", "ultra-waterfall"])
def test_messages_create_answers_in_anthropic_shape(claude: anthropic.Anthropic, model: str) -> None:
    raw = claude.messages.with_raw_response.create(
        model=model, max_tokens=200, system="Be brief.", messages=[{"role": "user", "content": "hello gateway"}]
    )
    message = raw.parse()
    assert raw.headers["x-ultra-providers"]
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == model
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert "hello gateway" in message.content[0].text
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    assert message.id.startswith("msg_")
    assert (message.model_extra or {}).get("ultra", {}).get("calls")


def _tool_round_trip(claude: anthropic.Anthropic, model: str, *, stream: bool) -> list[Any]:
    """An agent loop: the model calls the tool, gets its result, answers in text. Returns both messages."""
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Oslo?"}]
    answers = []
    for _ in range(2):
        if stream:
            with claude.messages.stream(model=model, max_tokens=200, tools=[WEATHER], messages=messages) as events:
                types = [event.type for event in events]
                answer = events.get_final_message()
            assert types[0] == "message_start"
            assert "content_block_start" in types
            assert types[-2:] == ["message_delta", "message_stop"] or types[-1] == "message_stop"
        else:
            answer = claude.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=messages)
        answers.append(answer)
        if answer.stop_reason != "tool_use":
            break
        call = next(block for block in answer.content if block.type == "tool_use")
        messages += [
            {"role": "assistant", "content": answer.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12 C, rain"}]},
        ]
    return answers


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("model", ["mock/alpha", "ultra-waterfall"])
def test_messages_tool_loop_on_the_mock_fleet_ends_in_text(
    claude: anthropic.Anthropic, model: str, stream: bool
) -> None:
    first, second = _tool_round_trip(claude, model, stream=stream)
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use"
    assert call.name == "get_weather"
    # The mock's arguments satisfy the tool's schema: every required field, the enum's value, integer bounds.
    assert call.input == {"city": "city", "unit": "celsius", "days": 1}
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert "12 C, rain" in second.content[0].text


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_messages_tool_loop_on_a_direct_openai_compatible_deployment(
    claude: anthropic.Anthropic, fake: FakeOpenAI, stream: bool
) -> None:
    first, second = _tool_round_trip(claude, "up/echo", stream=stream)
    assert first.stop_reason == "tool_use"
    assert first.content[-1].input == {"q": 1}
    assert second.stop_reason == "end_turn"
    sent = fake.bodies_for("echo")[-1]
    assert sent["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": WEATHER["input_schema"],
            "description": "The weather in a city",
        },
    }
    assert sent["messages"][-1]["role"] == "tool"
    assert sent["messages"][-1]["content"] == "12 C, rain"
    assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("model", ["mock/alpha", "up/echo", "ultra-waterfall"])
def test_messages_stream_text(claude: anthropic.Anthropic, model: str) -> None:
    with claude.messages.stream(
        model=model, max_tokens=200, messages=[{"role": "user", "content": "stream to me please"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "stream to me please" in text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert final.usage.input_tokens > 0


def test_messages_count_tokens_is_an_estimate(claude: anthropic.Anthropic) -> None:
    short = claude.messages.count_tokens(model="mock/alpha", messages=[{"role": "user", "content": "hi"}])
    longer = claude.messages.count_tokens(
        model="mock/alpha", messages=[{"role": "user", "content": "hi " * 400}], tools=[WEATHER]
    )
    assert 0 < short.input_tokens < longer.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="nope/none", messages=[{"role": "user", "content": "hi"}])


def test_messages_errors_are_anthropic_shaped(claude: anthropic.Anthropic, gateway: GatewayProcess) -> None:
    wrong = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0, timeout=20)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        wrong.messages.create(model="mock/alpha", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Incorrect API key provided."},
    }
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="nope/none", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert isinstance(missing.value.body, dict)
    assert missing.value.body["error"]["type"] == "not_found_error"
    # Bearer works as well as x-api-key; a body without max_tokens is Anthropic's invalid_request_error.
    response = httpx.post(
        gateway.base_url + "/v1/messages",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "mock/alpha", "messages": [{"role": "user", "content": "x"}]},
        timeout=20,
    )
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in response.json()["error"]["message"]


def test_messages_stream_cut_upstream_raises_in_the_sdk(claude: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIError),
        claude.messages.stream(model="up/cut", max_tokens=50, messages=[{"role": "user", "content": "x"}]) as stream,
    ):
        for _ in stream:
            pass
