"""End to end: the real gateway (subprocess) serving its other inbound APIs to the real SDKs, unchanged:
Anthropic's `messages.create` / `messages.stream` / `messages.count_tokens`, OpenAI's `responses.*` and
`embeddings.create`. Each runs against the mock fleet, a direct `provider/model` deployment on a fake
OpenAI-compatible upstream, and an `ultra-*` alias."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pydantic
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


# --- OpenAI Responses -------------------------------------------------------------------------------------------

FUNCTION = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": WEATHER["input_schema"],
}


class Person(pydantic.BaseModel):
    name: str
    age: int
    tags: list[str]


@pytest.fixture(scope="module")
def oai(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=KEY, max_retries=0, timeout=20)


@pytest.mark.parametrize("model", ["mock/alpha", "up/echo", "ultra-waterfall"])
def test_responses_create(oai: openai.OpenAI, model: str) -> None:
    raw = oai.responses.with_raw_response.create(model=model, input="hello responses", instructions="Be brief.")
    response = raw.parse()
    assert raw.headers["x-ultra-providers"]
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == model
    assert response.instructions == "Be brief."
    assert "hello responses" in response.output_text
    assert response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens > 0
    assert (response.model_extra or {}).get("ultra", {}).get("calls")


@pytest.mark.parametrize("model", ["mock/alpha", "up/echo", "ultra-waterfall"])
def test_responses_stream_has_the_event_sequence_the_sdk_expects(oai: openai.OpenAI, model: str) -> None:
    with oai.responses.stream(model=model, input="stream me") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [event.type for event in events]
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    numbers = [event.sequence_number for event in events]
    assert numbers == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert "stream me" in text
    assert final.output_text == text
    assert final.usage is not None
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("model", ["mock/alpha", "up/echo", "ultra-waterfall"])
def test_responses_function_call_loop_with_previous_response_id(oai: openai.OpenAI, model: str, stream: bool) -> None:
    def ask(**kwargs: Any) -> Any:
        if not stream:
            return oai.responses.create(model=model, tools=[FUNCTION], **kwargs)
        with oai.responses.stream(model=model, tools=[FUNCTION], **kwargs) as events:
            kinds = [event.type for event in events]
            assert kinds[-1] == "response.completed"
            return events.get_final_response()

    first = ask(input="What is the weather in Oslo?")
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather"
    arguments = json.loads(call.arguments)
    assert arguments == ({"q": 1} if model == "up/echo" else {"city": "city", "unit": "celsius", "days": 1})
    second = ask(
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "12 C, rain"}],
    )
    assert second.previous_response_id == first.id
    assert not [item for item in second.output if item.type == "function_call"]
    if model != "up/echo":  # the fake upstream echoes the last user message instead
        assert "12 C, rain" in second.output_text


def test_responses_chain_carries_the_conversation_upstream(oai: openai.OpenAI, fake: FakeOpenAI) -> None:
    first = oai.responses.create(model="up/echo", input="my name is Ada", instructions="first instructions")
    oai.responses.create(model="up/echo", input="what is my name?", previous_response_id=first.id)
    sent = fake.bodies_for("echo")[-1]["messages"]
    # The instructions of a previous response are not carried over; its input and output are.
    assert sent == [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "echo: my name is Ada"},
        {"role": "user", "content": "what is my name?"},
    ]


def test_responses_parse_with_a_pydantic_text_format(oai: openai.OpenAI) -> None:
    parsed = oai.responses.parse(model="mock/alpha", input="Describe someone", text_format=Person)
    assert parsed.output_parsed == Person(name="name", age=0, tags=["tags"])
    with oai.responses.stream(model="ultra-waterfall", input="Describe someone", text_format=Person) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_parsed == Person(name="name", age=0, tags=["tags"])


def test_responses_are_stored_per_key_unless_store_is_false(oai: openai.OpenAI, gateway: GatewayProcess) -> None:
    kept = oai.responses.create(model="mock/alpha", input="keep me")
    assert oai.responses.retrieve(kept.id).output_text == kept.output_text
    unkept = oai.responses.create(model="mock/alpha", input="forget me", store=False)
    assert unkept.store is False
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(unkept.id)
    with pytest.raises(openai.NotFoundError) as caught:
        oai.responses.create(model="mock/alpha", input="next", previous_response_id=unkept.id)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "previous_response_not_found"
    deleted = httpx.delete(
        f"{gateway.base_url}/v1/responses/{kept.id}", headers={"authorization": f"Bearer {KEY}"}, timeout=20
    )
    assert deleted.json() == {"id": kept.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(kept.id)


def test_responses_refuse_built_in_tools_with_a_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="mock/alpha", input="x", tools=[{"type": "web_search"}])
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "tools[0].type"


def test_responses_stream_cut_upstream_raises_in_the_sdk(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError), oai.responses.stream(model="up/cut", input="x") as stream:
        for _ in stream:
            pass


# --- Embeddings ------------------------------------------------------------------------------------------------


def test_embeddings_on_the_mock_fleet_are_deterministic_unit_vectors(oai: openai.OpenAI) -> None:
    # The SDK asks for base64 and decodes it: the gateway's base64 is what a float list would have been.
    first = oai.embeddings.create(model="mock/alpha", input=["cats", "dogs", "cats"])
    assert [d.index for d in first.data] == [0, 1, 2]
    cats, dogs, cats_again = (d.embedding for d in first.data)
    assert len(cats) == 256
    assert cats == cats_again
    assert cats != dogs
    assert math.isclose(sum(v * v for v in cats), 1.0, rel_tol=1e-5)
    floats = oai.embeddings.create(model="mock/alpha", input="cats", encoding_format="float", dimensions=8)
    assert len(floats.data[0].embedding) == 8
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0
    assert floats.model == "mock/alpha"
    again = oai.embeddings.create(model="mock/alpha", input="cats", dimensions=8)
    assert again.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)


def test_embeddings_pass_through_to_an_openai_compatible_upstream(oai: openai.OpenAI, fake: FakeOpenAI) -> None:
    response = oai.embeddings.create(model="up/echo", input=["a", "bcd"], dimensions=3)
    assert [d.embedding for d in response.data] == [[0.0, 1.0, 0.5], [1.0, 3.0, 0.5]]
    assert response.usage.total_tokens == 4
    assert response.model == "up/echo"
    sent = fake.bodies_for("echo")[-1]
    assert sent["input"] == ["a", "bcd"]
    assert sent["dimensions"] == 3
    assert sent["encoding_format"] == "base64"


def test_embeddings_refuse_aliases_and_bad_input(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as alias:
        oai.embeddings.create(model="ultra-waterfall", input="x")
    assert isinstance(alias.value.body, dict)
    assert alias.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as empty:
        oai.embeddings.create(model="mock/alpha", input=[])
    assert isinstance(empty.value.body, dict)
    assert empty.value.body["param"] == "input"
    with pytest.raises(openai.NotFoundError):
        oai.embeddings.create(model="nope/none", input="x")
