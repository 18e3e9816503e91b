"""Stream accumulation, replay and the SDK's tool-call delta rules."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.stream import StreamAccumulator, ToolCallDeltaNormalizer, response_to_chunks
from gateway.core.types import ChatResponse, Usage


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def test_accumulates_content_tool_calls_and_usage() -> None:
    acc = StreamAccumulator()
    acc.add(chunk({"role": "assistant", "content": ""}))
    acc.add(chunk({"content": "Hel"}))
    acc.add(chunk({"content": "lo"}))
    acc.add(
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            }
        )
    )
    acc.add(
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{"}}
                ]
            }
        )
    )
    acc.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}))
    acc.add(chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}))
    acc.add(chunk({"tool_calls": [{"index": 1, "function": {"arguments": "}"}}]}))
    acc.add(chunk({}, finish="tool_calls"))
    acc.add(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        }
    )
    response = acc.response()
    message = response.choices[0]["message"]
    assert message["content"] == "Hello"
    assert [c["id"] for c in message["tool_calls"]] == ["call_a", "call_b"]
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["f", "g"]
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == ['{"x": 1}', "{}"]
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(9, 2)
    assert acc.complete


def test_normalizer_keeps_id_type_name_only_in_the_first_fragment_per_index() -> None:
    normalize = ToolCallDeltaNormalizer()
    first = normalize(
        chunk({"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}]})
    )
    repeat = normalize(
        chunk(
            {"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
        )
    )
    other = normalize(
        chunk({"tool_calls": [{"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}]})
    )
    assert first["choices"][0]["delta"]["tool_calls"][0]["id"] == "a"
    assert repeat["choices"][0]["delta"]["tool_calls"][0] == {"index": 0, "function": {"arguments": "{}"}}
    assert other["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "g"


texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@given(content=texts, n=st.integers(min_value=1, max_value=3), with_tools=st.booleans())
def test_replay_then_accumulate_round_trips(content: str, n: int, with_tools: bool) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish = "stop"
    if with_tools:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"q": 1}'}}],
        }
        finish = "tool_calls"
    original = ChatResponse(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 5,
            "model": "m",
            "choices": [
                {"index": i, "message": dict(message), "finish_reason": finish, "logprobs": None} for i in range(n)
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    )
    chunks = response_to_chunks(original, include_usage=True)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 7
    acc = StreamAccumulator()
    for c in chunks:
        acc.add(c)
    rebuilt = acc.response()
    assert rebuilt.choices == original.choices
    assert rebuilt.usage == original.usage
